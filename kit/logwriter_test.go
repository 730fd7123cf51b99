package kit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
)

// waitFor polls cond until it holds, or fails tb after a generous deadline.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNewLoggerWritesALoneInfoLine(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	kit.NewLogger(&out, "json", slog.LevelInfo).Info("alone")
	waitFor(t, "the line", func() bool { return strings.Contains(out.String(), `"msg":"alone"`) })
}

// writeCounter counts the writes that reach it.
type writeCounter struct {
	syncBuffer
	mu     sync.Mutex
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes++
	w.mu.Unlock()
	return w.syncBuffer.Write(p)
}

func TestNewLoggerBatchesInfoLinesIntoFewWrites(t *testing.T) {
	t.Parallel()
	var out writeCounter
	logger := kit.NewLogger(&out, "json", slog.LevelInfo)
	const n = 200
	for i := range n {
		logger.Info("line", "seq", i)
	}
	waitFor(t, "every line", func() bool { return strings.Count(out.String(), "\n") == n })
	out.mu.Lock()
	defer out.mu.Unlock()
	if out.writes > n/10 {
		t.Errorf("%d lines logged back to back took %d writes, want a few", n, out.writes)
	}
}

func TestNewLoggerWritesWarningsBeforeReturning(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelWarn, slog.LevelError} {
		t.Run(level.String(), func(t *testing.T) {
			t.Parallel()
			var out syncBuffer
			logger := kit.NewLogger(&out, "json", slog.LevelInfo).With("service", "test")
			logger.Info("first")
			logger.Log(context.Background(), level, "then")
			// No waiting: a program that logs an error and exits keeps it,
			// and the info line before it.
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"first"`) || !strings.Contains(lines[1], `"msg":"then"`) {
				t.Errorf("written when Log returned: %q, want the info line then the %s line", lines, level)
			}
		})
	}
}

func TestNewLoggerKeepsConcurrentLinesWholeAndInOrder(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	logger := kit.NewLogger(&out, "json", slog.LevelInfo)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				logger.Info("line", "writer", w, "seq", i, "pad", strings.Repeat("x", i%300))
			}
		})
	}
	wg.Wait()
	logger.Warn("done") // writes everything before it
	next := make([]int, writers)
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m struct {
			Msg         string
			Writer, Seq int
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if m.Msg != "line" {
			continue
		}
		if m.Seq != next[m.Writer] {
			t.Fatalf("writer %d: line %d after %d", m.Writer, m.Seq, next[m.Writer]-1)
		}
		next[m.Writer]++
	}
	for w, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines written, want %d", w, n, lines)
		}
	}
}

// TestNewLoggerKeepsLinesOfEitherFormatterInOrder logs, in one batch, lines
// that kit's JSON formatter writes and lines that it leaves to slog's (a
// float, a group), which the flusher writes in between.
func TestNewLoggerKeepsLinesOfEitherFormatterInOrder(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	logger := kit.NewLogger(&out, "json", slog.LevelInfo)
	grouped := logger.WithGroup("g")
	const n = 30
	for i := range n {
		switch i % 3 {
		case 0:
			logger.Info("kit", "seq", i)
		case 1:
			logger.Info("float", "seq", i, "f", 1.5)
		default:
			grouped.Info("group", "seq", i)
		}
	}
	logger.Warn("done") // writes everything before it
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != n+1 {
		t.Fatalf("%d lines written, want %d:\n%s", len(lines), n+1, out.String())
	}
	for i, line := range lines[:n] {
		var m struct {
			Seq int
			G   struct{ Seq int }
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if seq := m.Seq + m.G.Seq; seq != i {
			t.Errorf("line %d is %q, want seq %d", i, line, i)
		}
	}
}

func TestNewLoggerFormatsChangeableValuesBeforeReturning(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	logger := kit.NewLogger(&out, "json", slog.LevelInfo)
	logger.Info("plain", "n", 1)
	items := []int{1, 2}
	logger.Info("slice", "items", items)
	items[0] = 9 // after the call: the line must show what was logged
	logger.Info("plain again", "d", time.Second)
	logger.Warn("last")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m struct {
			Msg   string
			Items []int
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, m.Msg)
		if m.Msg == "slice" && (len(m.Items) != 2 || m.Items[0] != 1) {
			t.Errorf("slice logged as %v, want [1 2], its value when Info returned", m.Items)
		}
	}
	if want := []string{"plain", "slice", "plain again", "last"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines in the order %q, want %q", got, want)
	}
}

func TestNewLoggerKeepsEachLinesTime(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	logger := kit.NewLogger(&out, "json", slog.LevelInfo)
	before := time.Now()
	logger.Info("timed")
	after := time.Now()
	waitFor(t, "the line", func() bool { return strings.Contains(out.String(), `"msg":"timed"`) })
	var m struct{ Time time.Time }
	if err := json.Unmarshal([]byte(out.String()), &m); err != nil {
		t.Fatal(err)
	}
	if m.Time.Before(before.Round(0)) || m.Time.After(after.Round(0)) {
		t.Errorf("line's time %v, want the time of the call, between %v and %v", m.Time, before, after)
	}
}

// stuckWriter blocks every Write until released, and records what it got.
type stuckWriter struct {
	release chan struct{}
	entered chan struct{} // closed at the first Write
	once    sync.Once
	out     syncBuffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.out.Write(p)
}

func TestNewLoggerBlocksWhenItsWriterIsStuck(t *testing.T) {
	t.Parallel()
	w := &stuckWriter{release: make(chan struct{}), entered: make(chan struct{})}
	logger := kit.NewLogger(w, "json", slog.LevelInfo)
	logger.Info("first")
	<-w.entered // the flusher is stuck in Write
	// 4 MiB of lines, far past the buffer's bound: the logging goroutine
	// must stop before it is done.
	const n = 4096
	pad := strings.Repeat("x", 1000)
	progress := make(chan int, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			logger.Info("line", "seq", i, "pad", pad)
			progress <- i
		}
	}()
	logged := 0
	for stalled := 0; logged == 0 || stalled < 200; {
		select {
		case <-done:
			t.Fatal("logged 4 MiB while the writer was stuck: the buffer is not bounded")
		case <-progress:
			logged++
			stalled = 0
		case <-time.After(time.Millisecond):
			stalled++
		}
	}
	if logged == 0 || logged > 1024 {
		t.Errorf("logged %d lines of 1 KiB before blocking, want a few hundred", logged)
	}
	close(w.release)
	<-done
	logger.Warn("end")
	if got := strings.Count(w.out.String(), `"msg":"line"`); got != n {
		t.Errorf("%d lines written, want %d", got, n)
	}
}

func TestNewLoggerHoldsOneFlusherWhileItsWriterIsStuck(t *testing.T) {
	t.Parallel()
	w := &stuckWriter{release: make(chan struct{}), entered: make(chan struct{})}
	logger := kit.NewLogger(w, "json", slog.LevelInfo)
	logger.Info("first")
	<-w.entered
	// A line every millisecond for 100 ms: each would once start a
	// flushing goroutine of its own every flushDelay, all stuck behind
	// the first.
	for i := range 100 {
		logger.Info("line", "seq", i)
		time.Sleep(time.Millisecond)
	}
	var stacks strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&stacks, 2); err != nil {
		t.Fatal(err)
	}
	// Other tests' loggers may be flushing at this moment too.
	if n := strings.Count(stacks.String(), "kit.(*lineWriter).flushTimed("); n > 5 {
		t.Errorf("%d goroutines flushing a logger, want the one stuck in Write", n)
	}
	close(w.release)
	logger.Warn("end")
	if got := strings.Count(w.out.String(), `"msg":"line"`); got != 100 {
		t.Errorf("%d lines written, want 100", got)
	}
}

func TestRunWritesBufferedLinesBeforeReturning(t *testing.T) {
	t.Parallel()
	out := runToShutdown(t, kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff})
	if !strings.Contains(out, `"msg":"shutdown complete"`) {
		t.Errorf("when Run returned, the log was:\n%s\nwant its last line", out)
	}
}

// runToShutdown runs a server of cfg that a background component stops at
// once, and returns its JSON log as it was when Run returned.
func runToShutdown(t *testing.T, cfg kit.Config) string {
	t.Helper()
	var out syncBuffer
	srv, err := kit.New(cfg, kit.WithLogger(kit.NewLogger(&out, "json", slog.LevelInfo)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv.Go(func(context.Context) error { cancel(); return nil })
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// The shutdown lines' duration is nanoseconds, a number, as in every call's
// line: a log store that maps fields by type (Elasticsearch, Datadog's
// standard duration) refuses or drops lines whose duration is a string once
// the calls' lines have made it a number.
func TestShutdownLinesLogDurationAsCallsDo(t *testing.T) {
	t.Parallel()
	out := runToShutdown(t, kit.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	n := 0
	for line := range strings.Lines(out) {
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if d, ok := fields["duration"]; ok {
			n++
			if _, ok := d.(float64); !ok {
				t.Errorf("duration %q is not a number of nanoseconds: %s", d, line)
			}
		}
	}
	if n < 5 {
		t.Errorf("%d lines with a duration, want one per shutdown step:\n%s", n, out)
	}
}

func ExampleNewLogger() {
	logger := kit.NewLogger(&prefixWriter{}, "json", slog.LevelInfo)
	logger.Warn("written before Warn returns", "time_left", "none")
	// Output:
	// log: {"level":"WARN","msg":"written before Warn returns","time_left":"none"}
}

// prefixWriter prints lines without their time, for the example's output.
type prefixWriter struct{}

func (prefixWriter) Write(p []byte) (int, error) {
	var m map[string]any
	_ = json.Unmarshal(p, &m)
	delete(m, "time")
	b, _ := json.Marshal(m)
	fmt.Printf("log: %s\n", b)
	return len(p), nil
}
