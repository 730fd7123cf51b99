package kit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
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
