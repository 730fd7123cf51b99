package batchconn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// h2Preface is what an HTTP/2 client with prior knowledge sends first
// (RFC 9113, section 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Connection modes. A connection starts sniffing (ModeH2C), pending
// (ModeALPN) or batched (ModeAll) and changes at most once: from sniffing
// to batched or plain, from pending to batched.
const (
	modeSniffing int32 = iota // reading the first bytes, not yet decided
	modePlain                 // everything passes straight to the socket
	modeBatched               // writes coalesced, reads buffered
	modePending               // like plain until the TLS handshake batches it
)

// conn is a batched net.Conn. The embedded Conn is the socket; its methods
// that conn does not override (LocalAddr, RemoteAddr) pass through.
type conn struct {
	net.Conn
	sh   *shared
	mode atomic.Int32

	// Read side. rmu serializes reads and guards the read buffer.
	rmu     sync.Mutex
	sniffed int     // bytes of h2Preface matched so far, while sniffing
	rbuf    *[]byte // pooled read buffer, nil until the first buffered read
	rpos    int     // next unread byte of *rbuf
	rend    int     // end of the buffered bytes in *rbuf
	rdl     atomic.Int64
	// rdMessage is set while the read deadline in force is one that
	// [SetMessageReadDeadline] set: a read it cuts fails with
	// Config.ReadDeadlineMessage. Any other setting of the deadline
	// clears it.
	rdMessage atomic.Bool

	// The read deadline reaches the socket lazily (see SetReadDeadline),
	// and so does a plain connection's write deadline (SetWriteDeadline).
	dmu    sync.Mutex   // guards rdLazy and wdLazy
	rdLazy lazyDeadline // the read deadline
	wdLazy lazyDeadline // the write deadline

	writer // write side, in write.go
}

func newConn(c net.Conn, sh *shared) *conn {
	bc := &conn{Conn: c, sh: sh}
	bc.writer.init()
	switch sh.cfg.Mode {
	case ModeAll:
		bc.mode.Store(modeBatched)
	case ModeALPN:
		bc.mode.Store(modePending)
	}
	return bc
}

// NetConn returns the wrapped connection. Writing to it directly bypasses
// bytes still buffered here.
func (c *conn) NetConn() net.Conn { return c.Conn }

// Read reads from the read buffer, filling it with one read of the socket
// when it is empty. While the connection is still sniffing, it reads the
// socket directly and watches for the HTTP/2 preface.
func (c *conn) Read(p []byte) (int, error) {
	switch c.mode.Load() {
	case modePlain, modePending:
		if len(p) > 1 {
			return c.readDeep(p)
		}
		return c.readSocket(p)
	case modeSniffing:
		c.rmu.Lock()
		defer c.rmu.Unlock()
		if c.mode.Load() != modeSniffing {
			return c.readLocked(p)
		}
		n, err := c.readSocket(p)
		c.sniff(p[:n])
		return n, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.readBuffered(p)
}

func (c *conn) readLocked(p []byte) (int, error) {
	if c.mode.Load() == modePlain {
		return c.readSocket(p)
	}
	return c.readBuffered(p)
}

// sniff compares the bytes just read with the HTTP/2 preface and decides
// the mode at the first mismatch or at the preface's last byte. Bytes read
// before the decision have already been handed to the caller, so they are
// never buffered.
func (c *conn) sniff(b []byte) {
	for _, x := range b {
		if x != h2Preface[c.sniffed] {
			c.mode.Store(modePlain)
			return
		}
		c.sniffed++
		if c.sniffed == len(h2Preface) {
			c.mode.Store(modeBatched)
			return
		}
	}
}

// readBuffered serves p from the read buffer. Called with rmu held.
func (c *conn) readBuffered(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.rpos < c.rend {
		// Bytes that have arrived are delivered even past a read deadline,
		// except that an expired deadline is reported first, as a socket
		// would.
		if err := c.readDeadlineErr(); err != nil {
			return 0, err
		}
		n := copy(p, (*c.rbuf)[c.rpos:c.rend])
		c.rpos += n
		return n, nil
	}
	size := c.sh.cfg.ReadBufferSize
	if len(p) >= size {
		n, err := c.readSocket(p)
		if err != nil {
			c.releaseReadBuf()
		}
		return n, err
	}
	if c.rbuf == nil {
		c.rbuf = c.sh.readBufs.get(size)
	} else {
		c.yieldToResponse()
	}
	buf := (*c.rbuf)[:size]
	n, err := c.readSocket(buf)
	if n > 0 {
		m := copy(p, buf[:n])
		c.rpos, c.rend = m, n
		return m, nil // a read error comes back on the next Read
	}
	if err != nil {
		c.releaseReadBuf()
	}
	return 0, err
}

// maxReadYields bounds the yields of [conn.yieldToResponse] while bytes
// wait for the flusher.
const maxReadYields = 4

// yieldToResponse lets the goroutines that can run go before a read that
// has used up the buffer goes back to the socket, and lets the flusher
// write what they buffered first. At one call in flight, net/http's HTTP/2
// frame reader comes here as soon as the serve loop has taken a request's
// last frame, before the handler has run: the socket is then empty, and
// its read costs a read(2) that fails with EAGAIN and the parking of the
// goroutine in the poller, on the call's path (BENCHMARKS.md 1.36).
// Yielding first, the handler runs and its response is written, and only
// then the reader finds the socket empty. It never waits for anything: the
// first yield returns at once when nothing else can run, and the others
// happen only while bytes are buffered and the flusher has not taken them,
// at most maxReadYields times. With several Ps, another may run the reader
// meanwhile, which is as good.
func (c *conn) yieldToResponse() {
	runtime.Gosched()
	for range maxReadYields {
		c.mu.Lock()
		waiting := c.pend != nil && len(*c.pend) > 0
		c.mu.Unlock()
		if !waiting {
			return
		}
		runtime.Gosched()
	}
}

// releaseReadBuf returns the empty read buffer to the pool once the socket
// has failed: a closed connection keeps no buffer.
func (c *conn) releaseReadBuf() {
	c.rpos, c.rend = 0, 0
	if c.rbuf != nil {
		c.sh.readBufs.put(c.rbuf)
		c.rbuf = nil
	}
}

func (c *conn) readDeadlineErr() error {
	d := c.rdl.Load()
	if d == 0 || time.Now().UnixNano() < d {
		return nil
	}
	if c.rdMessage.Load() {
		return c.sh.readDeadline
	}
	return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
}

// deadlineError is a read cut by the read deadline, in the words of
// [Config.ReadDeadlineMessage]. It is what a socket's deadline error is to
// net/http and crypto/tls: a net.Error, a timeout, temporary (crypto/tls
// keeps a read error that is not, and fails every later read with it), and
// os.ErrDeadlineExceeded to errors.Is.
type deadlineError struct{ msg string }

func (e *deadlineError) Error() string   { return e.msg }
func (e *deadlineError) Timeout() bool   { return true }
func (e *deadlineError) Temporary() bool { return true }
func (e *deadlineError) Unwrap() error   { return os.ErrDeadlineExceeded }

// readError returns err, a read of the socket's error, as
// [Config.ReadDeadlineMessage] words it when the read deadline that cut
// the read is one [SetMessageReadDeadline] set.
func (c *conn) readError(err error) error {
	if c.rdMessage.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		return c.sh.readDeadline
	}
	return err
}

// SetReadDeadline sets the read deadline. Bytes already buffered are not
// returned once it has passed, as with a socket.
//
// The socket gets the deadline when it is read next, or at once if a read
// of it is in progress: a deadline only matters to a read. net/http sets an
// HTTP/1.x connection's read deadline 6 to 7 times a request (the header's
// timeout and its clearing, kit's body timeout, the clearing before the
// background read, the aborted background read, the idle timeout), most of
// them with no read of the socket in between, and each that reaches the
// socket costs ~350 instructions in the runtime's poller and timers; lazily,
// 2 a request do (BENCHMARKS.md 1.30). An error the socket would return for
// a deadline set lazily is not returned: the read it was for then fails
// as reads of that socket do (a closed connection).
func (c *conn) SetReadDeadline(t time.Time) error {
	if c.rdMessage.Load() {
		c.rdMessage.Store(false)
	}
	return c.setReadDeadline(t)
}

// SetMessageReadDeadline sets the read deadline of c, a connection of a
// listener from [NewListener] or a *tls.Conn over one, as SetReadDeadline
// does, and makes a read that it cuts fail with the listener's
// [Config.ReadDeadlineMessage] until the read deadline is set again. It
// reports false, setting nothing, when c is not such a connection or its
// listener has no message: the deadlines that others set (net/http's
// header and idle timeouts, a TLS handshake's, a handler's through
// http.ResponseController, a hijacked connection's) keep the socket's
// error, whatever they mean.
func SetMessageReadDeadline(c net.Conn, t time.Time) (bool, error) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	bc, ok := c.(*conn)
	if !ok || bc.sh.readDeadline == nil {
		return false, nil
	}
	bc.rdMessage.Store(true)
	return true, bc.setReadDeadline(t)
}

func (c *conn) setReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.rdl.Store(0)
	} else {
		c.rdl.Store(t.UnixNano())
	}
	return c.setLazy(&c.rdLazy, t)
}

// lazyDeadline is a deadline that reaches the socket when the socket is
// used: read for the read deadline, written for the write deadline.
type lazyDeadline struct {
	want   time.Time // the deadline last set
	socket time.Time // the socket's
	busy   int       // uses of the socket in progress
}

// setLazy sets d to t, giving it to the socket at once if d's use of the
// socket is in progress.
func (c *conn) setLazy(d *lazyDeadline, t time.Time) error {
	c.dmu.Lock()
	d.want = t
	var err error
	if d.busy > 0 {
		err = c.applyLocked(d)
	}
	c.dmu.Unlock()
	return err
}

// applyLocked gives the socket d's deadline last set, if it has another.
// Called with dmu held.
func (c *conn) applyLocked(d *lazyDeadline) error {
	if d.want == d.socket { // identical values: the same call's time
		return nil
	}
	var err error
	if d == &c.rdLazy {
		err = c.Conn.SetReadDeadline(d.want)
	} else {
		err = c.Conn.SetWriteDeadline(d.want)
	}
	if err == nil {
		d.socket = d.want
	}
	return err
}

// begin gives the socket d's deadline before a use of it; end follows the
// use.
func (c *conn) begin(d *lazyDeadline) {
	c.dmu.Lock()
	_ = c.applyLocked(d) // a closed socket fails the read or write too
	d.busy++
	c.dmu.Unlock()
}

func (c *conn) end(d *lazyDeadline) {
	c.dmu.Lock()
	d.busy--
	c.dmu.Unlock()
}

// readSocket reads the socket under the read deadline last set.
func (c *conn) readSocket(p []byte) (int, error) {
	c.begin(&c.rdLazy)
	n, err := c.Conn.Read(p)
	c.end(&c.rdLazy)
	if err != nil {
		err = c.readError(err)
	}
	return n, err
}

// readDeep reads the socket from under a frame of stackPad bytes. A plain
// (HTTP/1.x) connection's goroutine waits for its next request in a Read
// of a buffer (net/http's background read of one byte runs on a goroutine
// of its own), and the garbage collector halves a waiting goroutine's
// stack when it uses less than a quarter of it. kit's server gives that
// goroutine a 16 KiB stack for each request that finds it shrunk (kit's
// growConnStack), and both copies walk every frame on the stack: ~900
// instructions a Connect JSON call at 50 in flight (BENCHMARKS.md 1.31).
// With the frame, the waiting goroutine uses over 4 KiB and keeps its 16
// KiB. The frame is reserved, never written (see padUsed). An HTTP/2
// connection reads buffered once it is known as one (its TLS handshake,
// before ALPN, comes here).
//
//go:noinline
func (c *conn) readDeep(p []byte) (int, error) {
	if padUsed {
		// Never run: the frame holds pad all the same, and is not zeroed.
		var pad [stackPad]byte
		keepPad(&pad)
	}
	return c.readSocket(p)
}

// padUsed is always false. readDeep tests it so that the compiler keeps
// pad in the frame (a branch that it cannot prove dead) but zeroes it only
// on that branch: zeroed on every read, the pad wrote 32 cache lines of a
// stack that the connection's previous request left cold, ~20 first-level
// cache write misses and ~7 last-level ones a Connect JSON call at 50 in
// flight besides ~280 instructions (BENCHMARKS.md 1.35).
var padUsed bool

// stackPad is readDeep's frame: with net/http's frames beneath it, a
// goroutine waiting in it uses a quarter of 16 KiB.
const stackPad = 2 << 10

// keepPad keeps readDeep's frame from being optimized away.
//
//go:noinline
func keepPad(*[stackPad]byte) {}

// SetDeadline sets the read and write deadlines.
func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// ReadFrom hands the copy to the socket's own ReadFrom (sendfile, splice)
// when the connection is not batched, so HTTP/1.1 keeps those paths.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if c.mode.Load() != modeBatched {
		if rf, ok := c.Conn.(io.ReaderFrom); ok {
			c.begin(&c.wdLazy)
			defer c.end(&c.wdLazy)
			return rf.ReadFrom(r)
		}
	}
	return io.Copy(writerOnly{c}, r)
}

// writerOnly hides conn's ReadFrom from io.Copy, which would recurse.
type writerOnly struct{ io.Writer }

// shared is what the connections of one listener share: the configuration,
// the buffer pools and the switch [SkipCloseGrace] throws.
type shared struct {
	cfg      Config
	noGrace  atomic.Bool // closing drops buffered bytes instead of waiting
	readBufs bufPool     // ReadBufferSize each
	// writeBufs hold up to MaxBufferedBytes. A buffer is taken when a
	// connection has bytes to send and returned as soon as it has none,
	// so idle connections hold no write buffer.
	writeBufs bufPool
	// readDeadline is what a read cut by the read deadline returns, nil
	// for the socket's own error (see Config.ReadDeadlineMessage).
	readDeadline error
}

// bufPool is a pool of byte slices of at least a minimum capacity.
type bufPool struct{ p sync.Pool }

func (bp *bufPool) get(size int) *[]byte {
	if b, ok := bp.p.Get().(*[]byte); ok && cap(*b) >= size {
		return b
	}
	b := make([]byte, 0, size)
	return &b
}

func (bp *bufPool) put(b *[]byte) {
	*b = (*b)[:0]
	bp.p.Put(b)
}
