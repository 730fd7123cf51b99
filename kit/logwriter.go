package kit

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// maxBufferedLog bounds the log bytes a lineWriter holds; past it, Write
// waits for the flusher, so a slow log collector slows the logging calls
// down, as direct writes would, instead of growing the buffer.
const maxBufferedLog = 256 << 10

// flushDelay is how long an info line may wait in a lineWriter's buffer;
// flushSize is the buffered size that is written at once, without waiting.
const (
	flushDelay = 5 * time.Millisecond
	flushSize  = 64 << 10
)

// lineWriter batches log lines into fewer writes. Written straight to
// stderr, the line that every call logs costs a write(2) on the call's path
// (BENCHMARKS.md): at one call in flight, that write runs between the
// response and the next request. lineWriter appends each line to a buffer
// instead and writes the buffer flushDelay after its first line, or as soon
// as it holds flushSize bytes, in one write. A timer suits logs, unlike
// RPC frames (package internal/batchconn): a line that reaches the
// collector a few milliseconds late harms nobody. Lines at warn and above
// are written before their Handle returns (see [flushingHandler]), so that
// a program that logs an error and exits loses nothing; a crash can lose
// the last flushDelay of info lines. No goroutine waits while the buffer
// is empty. No package buffering like this exists for io.Writer (bufio
// needs an explicit Flush, and zap's BufferedWriteSyncer keeps a goroutine
// and flushes every 30 s by default), hence this file.
type lineWriter struct {
	w   io.Writer
	wmu sync.Mutex // held while writing to w: takes and writes in order

	mu       sync.Mutex
	cond     sync.Cond   // broadcast when the buffer is taken
	buf      []byte      // lines waiting for the flusher
	spare    []byte      // the buffer last written, reused
	timer    *time.Timer // runs flushTimed; created by the first line
	armed    bool        // timer will fire
	flushing bool        // a flushFull goroutine runs
	err      error       // the last write error, returned by Flush
}

func newLineWriter(w io.Writer) *lineWriter {
	lw := &lineWriter{w: w}
	lw.cond.L = &lw.mu
	return lw
}

// Write buffers p and makes sure a flush will write it. It never fails;
// write errors are returned by [lineWriter.Flush].
func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	for len(lw.buf) > 0 && len(lw.buf)+len(p) > maxBufferedLog {
		lw.cond.Wait()
	}
	lw.buf = append(lw.buf, p...)
	switch {
	case len(lw.buf) >= flushSize && !lw.flushing:
		lw.flushing = true
		go lw.flushFull()
	case !lw.armed:
		// Every line is covered: by this timer, by one armed before and
		// not yet past setting armed to false, or by flushFull.
		lw.armed = true
		if lw.timer == nil {
			lw.timer = time.AfterFunc(flushDelay, lw.flushTimed)
		} else {
			lw.timer.Reset(flushDelay)
		}
	}
	return len(p), nil
}

func (lw *lineWriter) flushTimed() {
	lw.mu.Lock()
	lw.armed = false
	lw.mu.Unlock()
	lw.writeOut()
}

func (lw *lineWriter) flushFull() {
	lw.writeOut()
	lw.mu.Lock()
	lw.flushing = false
	lw.mu.Unlock()
}

// Flush writes every line buffered so far before it returns, and returns
// the first write error since the last Flush.
func (lw *lineWriter) Flush() error {
	lw.writeOut()
	lw.mu.Lock()
	defer lw.mu.Unlock()
	err := lw.err
	lw.err = nil
	return err
}

// writeOut takes the buffer and writes it. Taking and writing under wmu
// keeps lines in order between the flusher and Flush.
func (lw *lineWriter) writeOut() {
	lw.wmu.Lock()
	defer lw.wmu.Unlock()
	lw.mu.Lock()
	b := lw.buf
	if len(b) == 0 {
		lw.mu.Unlock()
		return
	}
	lw.buf, lw.spare = lw.spare, nil
	lw.cond.Broadcast()
	lw.mu.Unlock()

	_, err := lw.w.Write(b)

	lw.mu.Lock()
	if err != nil && lw.err == nil {
		lw.err = err
	}
	if lw.spare == nil && cap(b) <= maxBufferedLog {
		lw.spare = b[:0]
	}
	lw.mu.Unlock()
}

// flushingHandler writes a [lineWriter]'s buffer at once after every record
// at warn level or above.
type flushingHandler struct {
	slog.Handler
	w *lineWriter
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(attrs), h.w}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.w}
}

// flushLogger writes what logger buffered, if it comes from [NewLogger].
func flushLogger(logger *slog.Logger) {
	if h, ok := logger.Handler().(flushingHandler); ok {
		_ = h.w.Flush()
	}
}
