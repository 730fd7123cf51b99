package batchconn

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

// writer is the write side of a batched conn.
//
// Bytes written wait in pend. The first write to an empty buffer starts a
// flusher goroutine; it yields once, takes the whole buffer, writes it with
// one syscall under its own deadline, and repeats until the buffer is empty,
// then exits. While it writes, new bytes go to a fresh buffer.
type writer struct {
	wmu sync.Mutex // serializes Writes, so each one is contiguous on the wire

	mu          sync.Mutex
	cond        sync.Cond // broadcast: buffer space freed, flusher exited, deadline moved
	pend        *[]byte   // bytes waiting for the flusher; nil when none
	spare       *[]byte   // the buffer the flusher last wrote, reused while it runs
	flushing    bool      // a flusher goroutine runs; it owns the socket's write deadline
	err         error     // sticky write error
	shut        bool      // Close or CloseWrite began: new writes fail
	closeCalled bool      // Close was called
	cut         bool      // the socket was closed after a write error
	userDL      time.Time // write deadline set through SetWriteDeadline
	flushDL     time.Time // deadline of the flush in progress
	closeDL     time.Time // set by Close and CloseWrite: no flush outlasts it
}

func (w *writer) init() { w.cond.L = &w.mu }

// Write appends p to the write buffer and makes sure a flusher runs. It
// blocks while the buffer holds MaxBufferedBytes, until the flusher takes
// it, the write deadline passes or the connection fails. A write error of
// an earlier flush is returned by every later Write.
func (c *conn) Write(p []byte) (int, error) {
	switch c.mode.Load() {
	case modePlain, modePending:
		return c.writeSocket(p)
	case modeSniffing:
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if c.mode.Load() != modeBatched {
			return c.writeSocket(p)
		}
		return c.writeBatched(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeBatched(p)
}

// writeBatched is Write for a batched connection. Called with wmu held.
func (c *conn) writeBatched(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	max := c.sh.cfg.MaxBufferedBytes
	n := 0
	for {
		if err := c.writeErrLocked(); err != nil {
			return n, err
		}
		if len(p) == 0 {
			return n, nil
		}
		if c.pend == nil {
			c.pend, c.spare = c.spare, nil
			if c.pend == nil {
				c.pend = c.sh.writeBufs.get(min(max, 4<<10))
			}
		}
		room := max - len(*c.pend)
		if room <= 0 {
			if c.sh.noGrace.Load() {
				return n, c.opErr(net.ErrClosed) // SkipCloseGrace: the connection is about to be closed
			}
			if err := c.waitLocked(c.userDL); err != nil {
				return n, err
			}
			continue
		}
		k := min(room, len(p))
		*c.pend = append(*c.pend, p[:k]...)
		n += k
		p = p[k:]
		if !c.flushing {
			c.flushing = true
			go c.flushLoop()
		}
	}
}

func (c *conn) writeErrLocked() error {
	if c.err != nil {
		return c.err
	}
	if c.shut {
		return c.opErr(net.ErrClosed)
	}
	return nil
}

// waitLocked waits for a broadcast on cond, or until deadline if it is set.
func (c *conn) waitLocked(deadline time.Time) error {
	if deadline.IsZero() {
		c.cond.Wait()
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return c.opErr(os.ErrDeadlineExceeded)
	}
	t := time.AfterFunc(d, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	c.cond.Wait()
	t.Stop()
	return nil
}

// flushLoop writes the buffer until it is empty, then exits. Before each
// write it yields once so that goroutines producing the rest of a response
// (the HTTP/2 serve loop, frame writers, handlers) can add to the batch.
func (c *conn) flushLoop() {
	for {
		runtime.Gosched()
		c.mu.Lock()
		if c.err != nil || c.pend == nil || len(*c.pend) == 0 {
			c.flushing = false
			if c.spare != nil {
				c.sh.writeBufs.put(c.spare)
				c.spare = nil
			}
			if c.pend != nil && c.err == nil {
				c.sh.writeBufs.put(c.pend)
				c.pend = nil
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		buf := c.pend
		c.pend = nil
		c.flushDL = c.flushDeadlineLocked()
		err := c.Conn.SetWriteDeadline(c.flushDL)
		c.cond.Broadcast() // the buffer is empty again
		c.mu.Unlock()

		if err == nil {
			_, err = c.Conn.Write(*buf)
		}

		c.mu.Lock()
		if c.spare == nil {
			*buf = (*buf)[:0]
			c.spare = buf
		} else {
			c.sh.writeBufs.put(buf)
		}
		if err != nil {
			c.failLocked(err)
		}
		c.mu.Unlock()
	}
}

// flushDeadlineLocked is the earliest of now+FlushTimeout, the user's write
// deadline and Close's deadline.
func (c *conn) flushDeadlineLocked() time.Time {
	dl := time.Now().Add(c.sh.cfg.FlushTimeout)
	for _, t := range [...]time.Time{c.userDL, c.closeDL} {
		if !t.IsZero() && t.Before(dl) {
			dl = t
		}
	}
	return dl
}

// failLocked makes err sticky, drops what is buffered and closes the
// socket: a connection whose peer stopped reading must not stay open, and
// its reader must see the failure too.
func (c *conn) failLocked(err error) {
	if c.err == nil {
		if _, ok := err.(*net.OpError); !ok {
			err = c.opErr(err)
		}
		c.err = err
	}
	if c.pend != nil {
		c.sh.writeBufs.put(c.pend)
		c.pend = nil
	}
	c.cond.Broadcast()
	if !c.cut {
		c.cut = true
		c.Conn.Close()
	}
}

// drainLocked waits until the flusher has written everything buffered, or
// until CloseGrace has passed (then the flush fails and what is left is
// dropped). After [SkipCloseGrace] the grace is zero: a flush in progress
// fails at once and drainLocked returns as soon as its flusher has exited.
func (c *conn) drainLocked() {
	c.shut = true
	grace := c.sh.cfg.CloseGrace
	if c.sh.noGrace.Load() {
		grace = 0
	}
	c.closeDL = time.Now().Add(grace)
	if c.flushing && c.flushDL.After(c.closeDL) {
		c.flushDL = c.closeDL
		c.Conn.SetWriteDeadline(c.closeDL)
	}
	for c.flushing {
		c.cond.Wait()
	}
}

// Close writes what is buffered, waiting at most CloseGrace (not at all
// after [SkipCloseGrace]), then closes the socket. A second Close closes
// the socket at once, cutting a drain in progress.
func (c *conn) Close() error {
	if c.mode.Load() == modePlain {
		return c.Conn.Close()
	}
	c.mu.Lock()
	if c.closeCalled {
		c.mu.Unlock()
		return c.Conn.Close()
	}
	c.closeCalled = true
	c.drainLocked()
	cut := c.cut
	c.cut = true
	c.mu.Unlock()
	if cut {
		return nil // closed already, after a write error
	}
	return c.Conn.Close()
}

// CloseWrite writes what is buffered, waiting at most CloseGrace (not at
// all after [SkipCloseGrace]), then shuts down the socket's writing side if
// it has one (TCP, Unix).
func (c *conn) CloseWrite() error {
	if c.mode.Load() != modePlain {
		c.mu.Lock()
		c.drainLocked()
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.opErr(errors.ErrUnsupported)
}

// SetWriteDeadline sets the write deadline. On a batched connection a Write
// only waits for buffer space, and the deadline bounds that wait and every
// flush (with FlushTimeout, whichever is earlier).
//
// On a plain connection (HTTP/1.x) the socket gets it when it is written
// next, or at once if a write is in progress, as with the read deadline
// (see [conn.SetReadDeadline]): kit bounds each unary response with a
// write deadline that net/http clears after the response, and the next
// request's deadline then replaces the cleared one with one update of the
// socket's timer instead of two (BENCHMARKS.md 1.30).
func (c *conn) SetWriteDeadline(t time.Time) error {
	if c.mode.Load() == modePlain {
		return c.setLazy(&c.wdLazy, t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.userDL = t
	if m := c.mode.Load(); m == modeSniffing || m == modePending || m == modePlain {
		// Given at once, and recorded for a connection that turns plain.
		c.dmu.Lock()
		defer c.dmu.Unlock()
		c.wdLazy.want = t
		return c.applyLocked(&c.wdLazy)
	}
	c.cond.Broadcast() // writers waiting for space re-check the deadline
	if c.flushing && !t.IsZero() && t.Before(c.flushDL) {
		c.flushDL = t
		return c.Conn.SetWriteDeadline(t)
	}
	return nil
}

// writeSocket writes p to the socket under the write deadline last set.
func (c *conn) writeSocket(p []byte) (int, error) {
	c.begin(&c.wdLazy)
	n, err := c.Conn.Write(p)
	c.end(&c.wdLazy)
	return n, err
}

func (c *conn) opErr(err error) error {
	return &net.OpError{Op: "write", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
