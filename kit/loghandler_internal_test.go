package kit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/logline"
)

// An RPC line handed to kit's logger as it is (HandleRPC) is written as
// slog's JSONHandler writes its record, the one Logging gives any other
// handler, in order with the records around it; lines that the handler
// cannot write so are refused, for Logging to give their records.
func TestRPCLineMatchesSlog(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 5, 10, 31, 509587511, time.UTC)
	unary := logline.RPC{Time: at, Level: slog.LevelInfo, Peer: "127.0.0.1:56430", Code: "ok",
		Duration: 66779 * time.Nanosecond, RequestID: "24d41f84-b342-4607-8b25-afefdd539c27"}
	with := func(change func(*logline.RPC)) logline.RPC {
		l := unary
		change(&l)
		return l
	}
	shared := func(h slog.Handler) slog.Handler {
		return h.WithAttrs([]slog.Attr{slog.String("service", "users")}).
			WithAttrs([]slog.Attr{slog.String("kind", "server"), slog.String("procedure", "/pkg.Svc/Do"),
				slog.String("stream", "unary"), slog.String("protocol", "connect"), slog.String("http", "HTTP/1.1")})
	}
	same := func(h slog.Handler) slog.Handler { return h }
	for _, c := range []struct {
		name  string
		setup func(slog.Handler) slog.Handler
		line  logline.RPC
	}{
		{"unary", shared, unary},
		{"without handler attributes", same, unary},
		{"debug", shared, with(func(l *logline.RPC) { l.Level = slog.LevelDebug })},
		{"between levels", shared, with(func(l *logline.RPC) { l.Level = slog.LevelInfo + 2 })},
		{"stream", shared, with(func(l *logline.RPC) { l.Stream, l.Sent, l.Received = true, 3, -1 })},
		{"no request id", shared, with(func(l *logline.RPC) { l.RequestID = "" })},
		{"principal", shared, with(func(l *logline.RPC) { l.Principal = "alice \"a\"" })},
		{"trace ids", shared, with(func(l *logline.RPC) {
			l.TraceID, l.SpanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		})},
		{"escapes", shared, with(func(l *logline.RPC) {
			l.Peer, l.Code, l.RequestID = "a\"b\\c\nd\u2028é\xff", "", "<>&"
		})},
		{"negative duration, in a zone", shared, with(func(l *logline.RPC) {
			l.Duration, l.Time = -time.Second, time.Now().In(time.FixedZone("CET", 3600))
		})},
		{"a zero time", shared, with(func(l *logline.RPC) { l.Time = time.Time{} })},
		{"a year past 9999", shared, with(func(l *logline.RPC) { l.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var ours, slogs bytes.Buffer
			logger := NewLogger(&ours, "json", slog.LevelDebug)
			h := c.setup(logger.Handler())
			// Twice, the second time with the queued line and record in
			// each other's places: a slot is reused.
			before, after := record(slog.LevelInfo, "before", slog.Int("n", 1)), record(slog.LevelInfo, "after", slog.Any("err", errors.New("x")))
			for _, rpcFirst := range []bool{false, true} {
				if !rpcFirst {
					if err := h.Handle(context.Background(), before.Clone()); err != nil {
						t.Fatal(err)
					}
				}
				if !h.(logline.Handler).HandleRPC(c.line) {
					t.Fatal("HandleRPC refused the line")
				}
				if rpcFirst {
					if err := h.Handle(context.Background(), before.Clone()); err != nil {
						t.Fatal(err)
					}
				}
				if err := h.Handle(context.Background(), after.Clone()); err != nil {
					t.Fatal(err)
				}
				flushLogger(logger)
			}

			sh := c.setup(slog.NewJSONHandler(&slogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			r := slog.NewRecord(c.line.Time, c.line.Level, logline.Message, 0)
			r.AddAttrs(c.line.AppendAttrs(nil)...)
			for _, r := range []slog.Record{before, r, after, r, before, after} {
				if err := sh.Handle(context.Background(), r); err != nil {
					t.Fatal(err)
				}
			}
			if ours.String() != slogs.String() {
				t.Errorf("kit's logger wrote\n%s\nslog's JSONHandler\n%s", ours.String(), slogs.String())
			}
		})
	}

	for _, c := range []struct {
		name   string
		logger func(*bytes.Buffer) slog.Handler
		line   logline.RPC
	}{
		{"warn", func(b *bytes.Buffer) slog.Handler { return NewLogger(b, "json", slog.LevelDebug).Handler() },
			with(func(l *logline.RPC) { l.Level = slog.LevelWarn })},
		{"in a group", func(b *bytes.Buffer) slog.Handler {
			return NewLogger(b, "json", slog.LevelDebug).Handler().WithGroup("g")
		}, unary},
		{"an attribute slog formats", func(b *bytes.Buffer) slog.Handler {
			return NewLogger(b, "json", slog.LevelDebug).Handler().WithAttrs([]slog.Attr{slog.Float64("f", 0.5)})
		}, unary},
		{"text", func(b *bytes.Buffer) slog.Handler { return NewLogger(b, "text", slog.LevelDebug).Handler() }, unary},
	} {
		t.Run("refused/"+c.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			h := c.logger(&buf)
			if h.(logline.Handler).HandleRPC(c.line) {
				t.Fatal("HandleRPC took the line")
			}
			flushLogger(slog.New(h))
			if out := buf.String(); strings.TrimSpace(out) != "" {
				t.Errorf("a refused line wrote %q", out)
			}
		})
	}
}

// orderedWriter is a slow io.Writer (each Write takes 100µs, as a pipe to
// a busy collector may), so that records queue up past maxPending.
type orderedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *orderedWriter) Write(p []byte) (int, error) {
	time.Sleep(100 * time.Microsecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestLogLinesKeepTheirOrder: goroutines logging RPC lines (HandleRPC) and
// plain records at once, fast enough that the queue fills and callers
// format their own lines (past maxPending), get every line written, each
// goroutine's in the order it logged them, whichever path each took.
func TestLogLinesKeepTheirOrder(t *testing.T) {
	t.Parallel()
	var w orderedWriter
	logger := NewLogger(&w, "json", slog.LevelDebug)
	const goroutines, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			h := logger.Handler().WithAttrs([]slog.Attr{slog.Int("g", g)})
			for i := range lines {
				peer := strconv.Itoa(i)
				if i%2 == 0 && h.(logline.Handler).HandleRPC(logline.RPC{Time: time.Now(), Level: slog.LevelInfo, Peer: peer, Code: "ok"}) {
					continue
				}
				_ = h.Handle(context.Background(), record(slog.LevelDebug, "line", slog.String("peer", peer)))
			}
		})
	}
	wg.Wait()
	flushLogger(logger)
	w.mu.Lock()
	defer w.mu.Unlock()
	next := make([]int, goroutines)
	for line := range bytes.Lines(w.b.Bytes()) {
		var l struct {
			G    int
			Peer string
		}
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if l.Peer != strconv.Itoa(next[l.G]) {
			t.Fatalf("goroutine %d's line %s after its line %d", l.G, l.Peer, next[l.G]-1)
		}
		next[l.G]++
	}
	for g, n := range next {
		if n != lines {
			t.Errorf("goroutine %d: %d lines written, want %d", g, n, lines)
		}
	}
}
