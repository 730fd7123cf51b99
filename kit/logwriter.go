package kit

import (
	"io"
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
// the last flushDelay of info lines. It also holds records that wait to be
// formatted by the flusher, before it writes (see [flushingHandler]). No
// goroutine waits while the buffer is empty. No package buffering like this
// exists for io.Writer (bufio needs an explicit Flush, and zap's
// BufferedWriteSyncer keeps a goroutine and flushes every 30 s by default),
// hence this file.
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
	waiting  int         // Writes waiting for room
	err      error       // the last write error, returned by Flush

	// Records waiting to be formatted (see [flushingHandler]), under mu;
	// fmu is held while formatting, which keeps lines in order.
	fmu          sync.Mutex
	pending      []pendingLine
	sparePending []pendingLine
	lines        []byte    // under fmu: the formatted lines of pending records
	times        timeCache // under fmu: the last second their times fell in
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
		// The flusher formats before it writes, and formatting may be
		// what waits here: flushFull only writes.
		if !lw.flushing {
			lw.flushing = true
			go lw.flushFull()
		}
		lw.waiting++
		lw.cond.Wait()
		lw.waiting--
	}
	lw.buf = append(lw.buf, p...)
	if len(lw.buf) >= flushSize && !lw.flushing {
		lw.flushing = true
		go lw.flushFull()
	} else {
		lw.armLocked()
	}
	return len(p), nil
}

// armLocked makes sure the timer will flush what is buffered or pending.
// Every line is covered: by this timer, by one that is flushing and will
// arm it again, or by flushFull.
func (lw *lineWriter) armLocked() {
	if lw.armed {
		return
	}
	lw.armed = true
	if lw.timer == nil {
		lw.timer = time.AfterFunc(flushDelay, lw.flushTimed)
	} else {
		lw.timer.Reset(flushDelay)
	}
}

// flushTimed formats and writes what waits. The timer stays armed until
// it is done, so that a writer that blocks holds one flushing goroutine, not
// one more every flushDelay; what was logged meanwhile arms it again.
func (lw *lineWriter) flushTimed() {
	lw.formatPending()
	lw.writeOut()
	lw.mu.Lock()
	lw.armed = false
	if len(lw.buf) > 0 || len(lw.pending) > 0 {
		lw.armLocked()
	}
	lw.mu.Unlock()
}

// flushFull writes until the buffer is below flushSize and no Write
// waits for room.
func (lw *lineWriter) flushFull() {
	for {
		lw.writeOut()
		lw.mu.Lock()
		if len(lw.buf) < flushSize && (lw.waiting == 0 || len(lw.buf) == 0) {
			lw.flushing = false
			lw.mu.Unlock()
			return
		}
		lw.mu.Unlock()
	}
}

// Flush formats and writes every line logged so far before it returns, and
// returns the first write error since the last Flush.
func (lw *lineWriter) Flush() error {
	lw.formatPending()
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
