package kit

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connectkit/connectkit/interceptors"
)

// http1AnswerError is the error of the reads of an h2c connection whose
// server answered its preface in HTTP/1.x, which fail the calls on it, so
// that such a call, which no handler saw as itself, is told from one whose
// own connection failed. A dial refused while the address is known to
// speak HTTP/1.x returns it too.
type http1AnswerError struct{ addr string }

func (e *http1AnswerError) Error() string {
	return "the server at " + e.addr + " answered the h2c preface in HTTP/1.x: it speaks HTTP/1.x only"
}

// sniffConn is an h2c connection that looks at the first bytes its server
// sends, and tells its transport when they are "HTTP/1." (see
// http1Prefix); from then on its reads return an http1AnswerError (see
// Write for its writes). Until it has decided, its reads are made one at a
// time, so that the bytes are looked at in their order; once its server
// sent something else, a read or a write costs an atomic load more than
// the connection's own.
type sniffConn struct {
	net.Conn
	peer *cleartextTransport

	state atomic.Uint32 // sniffing, notHTTP1 or answeredHTTP1
	// h2 is 1 once the server answered other than in HTTP/1.x, and
	// counted in its transport's h2Open, 2 once closed (see Close).
	h2   atomic.Uint32
	mu   sync.Mutex // held by the reads while sniffing
	head [len(http1Prefix)]byte
	n    int // of head, guarded by mu
}

// The states of a sniffConn.
const (
	sniffing uint32 = iota
	notHTTP1
	answeredHTTP1
)

func (c *sniffConn) Read(p []byte) (int, error) {
	if c.state.Load() == notHTTP1 {
		return c.Conn.Read(p)
	}
	return c.sniff(p, false)
}

// sniff reads into p while the connection is undecided and looks at what
// it read. Once its server answered in HTTP/1.x, it returns an
// http1AnswerError; a read of settle's returns nothing once the connection
// is decided.
func (c *sniffConn) sniff(p []byte, settling bool) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state.Load() {
	case answeredHTTP1:
		return 0, &http1AnswerError{addr: c.peer.addr}
	case notHTTP1:
		if settling {
			return 0, nil
		}
		return c.Conn.Read(p)
	}
	n, err := c.Conn.Read(p)
	c.look(p[:n], err)
	if c.state.Load() == answeredHTTP1 {
		return 0, &http1AnswerError{addr: c.peer.addr}
	}
	return n, err
}

// look decides on the bytes read so far and b, read with err: HTTP/1.x
// once they are http1Prefix, not once they cannot be, nor once a read
// fails (the server closed or reset the connection before it answered).
func (c *sniffConn) look(b []byte, err error) {
	c.n += copy(c.head[c.n:], b)
	switch {
	case c.n == 0 && err != nil:
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) { // not this side's
			c.peer.silent.Store(&err)
		}
	case c.n == 0:
		return
	case !bytes.HasPrefix([]byte(http1Prefix), c.head[:c.n]): // an HTTP/2 server, maybe in place of an HTTP/1.x one
		c.peer.silent.Store(nil)
		c.peer.sawHTTP2("answered h2c")
		if c.h2.CompareAndSwap(0, 1) { // not closed meanwhile
			c.peer.h2Open.Add(1) // before h2Answers: see h2State
			c.peer.h2Answers.Add(1)
		}
	case c.n == len(http1Prefix):
		c.peer.silent.Store(nil)
		c.peer.sawHTTP1()
		c.state.Store(answeredHTTP1)
		return
	case err == nil:
		return // a prefix of it so far
	}
	c.state.Store(notHTTP1)
}

// Close closes the connection, and takes it from its transport's h2Open.
func (c *sniffConn) Close() error {
	if c.h2.Swap(2) == 1 {
		c.peer.h2Open.Add(-1)
	}
	return c.Conn.Close()
}

// Write writes p; when that fails before the server's first bytes were
// looked at, it looks at them before it returns (the server's answer came
// before the reset that failed the write). Once they were "HTTP/1.", a
// failed write is taken as done: its bytes were for an HTTP/2 server, and
// net/http's writer closes the connection on a write's error, failing the
// calls on it with an error of its own ("client connection force closed"),
// which would hide the answer from them; its reader fails them with the
// connection's http1AnswerError instead.
func (c *sniffConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.settle()
		if c.state.Load() == answeredHTTP1 {
			return len(p), nil
		}
	}
	return n, err
}

// settle reads the server's first bytes, waiting sniffWait at most, if no
// read has decided yet: a read under way (net/http's reader) returns by
// then, and decides, or this one does. Only a failed write waits so: a
// connection that net/http closes without one (idle, its ping unanswered,
// at shutdown) is closed at once, its server's answer unread, since the
// answer could fail no call there.
func (c *sniffConn) settle() {
	if c.state.Load() != sniffing {
		return
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(sniffWait))
	var buf [len(http1Prefix)]byte
	for c.state.Load() == sniffing {
		if _, err := c.sniff(buf[:], true); err != nil {
			return
		}
	}
}

// h1Conn is an HTTP/1.1 connection to an address known to speak HTTP/1.x
// only, which looks at the first byte its server sends: an HTTP/1.x
// answer's is 'H', an HTTP/2 server's is 0, the high byte of its SETTINGS
// frame's length (grpc-go's servers send it before they read a byte,
// and close the connection once they read what is no h2c preface). On a
// 0, the server is one that speaks only HTTP/2, in place of the HTTP/1.x
// one or beside it: the address is no longer known to speak HTTP/1.x, and
// the connection's reads fail with an http2AnswerError, so that its call,
// which no handler saw, is sent again over h2c; so do its writes that
// fail (see Write). A server that closes the connection without a byte
// after a request was written on it (net/http's HTTP/2-only server does
// so) may be one too, or an HTTP/1.x server that failed the request (a
// handler's panic): the address is no longer known to speak HTTP/1.x once
// silentCloses connections in a row closed so, and the call fails as it
// would, since an HTTP/1.x server that closes so may have handled it.
type h1Conn struct {
	net.Conn
	peer  *cleartextTransport
	wrote atomic.Bool // net/http's writer's
	h2    atomic.Bool // set once the server answered in HTTP/2
	// looked is net/http's reader's alone (it reads an HTTP/1.1
	// connection from one goroutine), which closes decided once its
	// first read returned.
	looked  bool
	decided chan struct{}
}

// newH1Conn returns c, to the address of peer, as an h1Conn.
func newH1Conn(c net.Conn, peer *cleartextTransport) *h1Conn {
	return &h1Conn{Conn: c, peer: peer, decided: make(chan struct{})}
}

// Write writes p. When that fails on a connection whose server answered
// in HTTP/2 (it closed the connection once it read what is no h2c
// preface, while a body bigger than the sockets' buffers was being
// written), it returns an http2AnswerError, which net/http's writer
// fails the call with before its reader could: it waits for the reader's
// look at the server's first byte, sniffWait at most.
func (c *h1Conn) Write(p []byte) (int, error) {
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	n, err := c.Conn.Write(p)
	if err != nil && c.answeredHTTP2() {
		return n, &http2AnswerError{addr: c.peer.addr}
	}
	return n, err
}

// answeredHTTP2 reports whether the server answered in HTTP/2, once the
// reader looked at its first byte or sniffWait passed.
func (c *h1Conn) answeredHTTP2() bool {
	wait := time.NewTimer(sniffWait)
	defer wait.Stop()
	select {
	case <-c.decided:
	case <-wait.C:
	}
	return c.h2.Load()
}

func (c *h1Conn) Read(p []byte) (int, error) {
	if c.h2.Load() {
		return 0, &http2AnswerError{addr: c.peer.addr}
	}
	n, err := c.Conn.Read(p)
	if c.looked || n == 0 && err == nil {
		return n, err
	}
	c.looked = true
	defer close(c.decided)
	switch {
	case n > 0 && p[0] == 0:
		c.h2.Store(true)
		c.peer.sawHTTP2("answered an HTTP/1.1 request in HTTP/2")
		return 0, &http2AnswerError{addr: c.peer.addr}
	case n == 0 && c.wrote.Load() && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed): // closed by its server
		if c.peer.h1Silent.Add(1) >= silentCloses {
			c.peer.sawHTTP2(fmt.Sprintf("closed %d HTTP/1.1 connections in a row without answering", silentCloses))
		}
	}
	return n, err
}

// http2AnswerError is the error of the reads of an HTTP/1.1 connection
// whose server answered in HTTP/2 (see h1Conn).
type http2AnswerError struct{ addr string }

func (e *http2AnswerError) Error() string {
	return "the server at " + e.addr + " answered an HTTP/1.1 request in HTTP/2: it speaks HTTP/2 only"
}

// http2OnlyError is the cause of the Unavailable error of a call that an
// HTTP/2-only server refused over HTTP/1.1 (see h1Conn) and that could not
// be sent again over h2c, its body being gone. Its handler did not see
// it, so it is [interceptors.ErrNotSent] to errors.Is, which Retry
// retries; the address's next calls go over h2c.
type http2OnlyError struct {
	addr        string
	cause, body error
}

func (e http2OnlyError) Error() string {
	return fmt.Sprintf("the server at %s, known to speak HTTP/1.x only, answered in HTTP/2, and the request's body could not be sent again over h2c (%v); "+
		"no handler saw it, and the next calls to %s go over h2c: send it again (HTTP/1.1 attempt: %v)", e.addr, e.body, e.addr, e.cause)
}

func (http2OnlyError) Unwrap() error { return interceptors.ErrNotSent }
