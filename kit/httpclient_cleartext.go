package kit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/bufbuild/httplb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/telemetry"
)

// A server at an http:// address that speaks only HTTP/1.x (a webhook, a
// legacy REST API, a net/http server without h2c) reads the h2c preface,
// "PRI * HTTP/2.0", as a request, answers it in HTTP/1.1 and closes the
// connection; net/http's HTTP/2 client then fails the call with whichever
// of "frame too large … looked like an HTTP/1.1 header", "broken pipe" or
// "client conn could not be established" the timing gives. Its
// connections show it independently of that: an HTTP/2 server's first
// bytes are a SETTINGS frame, whose first byte is 0 (its length is under
// 64KiB), an HTTP/1.x server's are "HTTP/1.". So each h2c connection looks
// at them (sniffConn), and the address's round tripper (cleartextTransport)
// sends a call that failed on such a server again over HTTP/1.1, with
// net/http's own HTTP/1.1 transport, and the address's next calls straight
// there. The call reached no handler as itself (the server saw "PRI *",
// then the rest of the preface, "SM", which no HTTP/1.x server takes for a
// request), so sending it again repeats nothing.
const http1Prefix = "HTTP/1."

// http1Memory is how long an address stays known to speak HTTP/1.x only
// once a connection to it showed so: its calls go over HTTP/1.1
// meanwhile, and the first after it (whose body can be sent again) tries
// h2c again, in case a server that speaks it took its place.
const http1Memory = 5 * time.Minute

// sniffWait bounds the wait for a server's first bytes when a write to its
// connection failed before any was read: an HTTP/1.x server's answer
// precedes its close, so it is already there unless the server sent none.
const sniffWait = 100 * time.Millisecond

// http1IdleConns is how many idle HTTP/1.1 connections the client keeps to
// one address that speaks only HTTP/1.x: a connection carries one call at
// a time there, so http.DefaultTransport's 2 would make a dial of most
// calls of a service called 16 at a time.
const http1IdleConns = 16

// http1MaxConns caps the HTTP/1.1 connections open to one address at once
// (http.Transport's MaxConnsPerHost, unlimited by default): a call beyond
// it waits for one of them to finish its call, as long as its context
// lets it. It is the number of calls that the one h2c connection the
// client keeps to an address carries at once to a kit server
// (KIT_MAX_CONCURRENT_STREAMS' default) or to any net/http one (its
// HTTP/2 server's default), so that a burst of calls opens no more
// connections to an HTTP/1.x server than it could have run at once over
// HTTP/2, where without a cap each call of the burst opened its own.
const http1MaxConns = DefaultMaxConcurrentStreams

// cleartextTransport is the round tripper of one http:// address: HTTP/2
// with prior knowledge (h2c), or HTTP/1.1 while the address is known to
// speak only HTTP/1.x (see http1Prefix).
type cleartextTransport struct {
	h2c    *http.Transport
	cfg    httplb.TransportConfig
	addr   string
	logger *slog.Logger
	// http1Calls counts the calls sent over HTTP/1.1, by peer; nil: none.
	http1Calls *prometheus.CounterVec

	http1Until atomic.Int64                   // UnixNano until which addr is known to speak HTTP/1.x only; 0: never seen to
	http1      atomic.Pointer[http.Transport] // made when first needed
	// silent is the read error of the last connection whose server
	// closed it without a byte; nil once a server answered.
	silent atomic.Pointer[error]
	// h2Open counts the open connections whose server answered other
	// than in HTTP/1.x (HTTP/2), h2Answers every one that ever did: a
	// call's h2c attempt during which both stayed put ran on a
	// connection whose server answered in HTTP/1.x or not at all.
	h2Open, h2Answers atomic.Int64
}

// newCleartextTransport returns the round tripper of the http:// address
// addr, whose connections cfg opens.
func newCleartextTransport(addr string, cfg httplb.TransportConfig, logger *slog.Logger) *cleartextTransport {
	t := &cleartextTransport{cfg: cfg, addr: addr, logger: logger}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	sniffed := cfg
	sniffed.DialFunc = t.dial
	t.h2c = newLeafTransport(sniffed, &protocols)
	return t
}

func (t *cleartextTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	known := t.http1Until.Load()
	if known != 0 && (time.Now().UnixNano() < known || !bodyResendable(req)) {
		return t.viaHTTP1(req)
	}
	answers, open := t.h2State()
	resp, err := t.h2c.RoundTrip(req)
	if err == nil || req.Context().Err() != nil {
		return resp, err
	}
	if !t.refusedAsHTTP1(err, known, open == 0 && t.h2Answers.Load() == answers) {
		return resp, t.named(err)
	}
	again, bodyErr := withNewBody(req)
	if bodyErr != nil {
		return nil, connect.NewError(connect.CodeUnavailable, http1OnlyError{addr: t.addr, cause: err, body: bodyErr})
	}
	return t.viaHTTP1(again)
}

// viaHTTP1 sends req over HTTP/1.1: it counts it in http1Calls by its
// Host (the host and port called, which httplb keeps while it sends the
// request to one of its addresses), and its client span, if it has one,
// says so (network.protocol.version "1.1").
func (t *cleartextTransport) viaHTTP1(req *http.Request) (*http.Response, error) {
	if t.http1Calls != nil {
		t.http1Calls.WithLabelValues(req.Host).Inc()
	}
	telemetry.MarkHTTP1(req.Context())
	return t.http1Transport().RoundTrip(req)
}

// refusedAsHTTP1 reports whether err, the error of a call's h2c attempt
// begun with the address's mark at known, says that the call reached no
// handler as itself because an HTTP/1.x server has the address. It does
// when the call's own connection found its server answering so (its reads
// return an http1AnswerError) or its dial was refused for that. Else, once
// the address is known so: when the call's connection closed before it
// was written (net/http says only h2NotEstablished), or when net/http
// failed it with an error of its own on a connection that an HTTP/1.x
// answer closed ("client conn is closed" to a body waiting for flow
// control, "cannot rewind body" to one it could not send on the next),
// which names no connection: the address must
// have been found so during the call, and no connection to it must have
// had an HTTP/2 answer meanwhile (noH2), so that the call's connection got
// an HTTP/1.x answer or none, and an HTTP/2 server sends its SETTINGS
// before it handles a request. Otherwise the error is the call's own, even
// when another connection found an HTTP/1.x server meanwhile (an L4
// balancer in front of servers of both kinds, during a rollout): its
// handler may have seen it, and sending it again could handle it twice.
func (t *cleartextTransport) refusedAsHTTP1(err error, known int64, noH2 bool) bool {
	var answered *http1AnswerError
	switch {
	case errors.As(err, &answered):
		return true
	case !t.knownHTTP1():
		return false
	case err.Error() == h2NotEstablished:
		return true
	}
	return noH2 && t.http1Until.Load() != known
}

// h2State returns h2Answers and h2Open, loaded in that order: a
// connection's HTTP/2 answer adds to h2Open, then to h2Answers, so one
// that answers between the loads shows in h2Open or in a later load of
// h2Answers. Loaded the other way round, it could show in neither (h2Open
// before its answer, h2Answers after), and a call that it then carried,
// failed by its close, was taken for one that no HTTP/2 server saw.
func (t *cleartextTransport) h2State() (answers, open int64) {
	answers = t.h2Answers.Load()
	return answers, t.h2Open.Load()
}

// knownHTTP1 reports whether the address is known to speak HTTP/1.x only.
func (t *cleartextTransport) knownHTTP1() bool {
	return time.Now().UnixNano() < t.http1Until.Load()
}

// h2NotEstablished is the text of net/http's error (unexported) for a
// call that was to be the first on a connection that closed before it
// could be sent: nothing of it left, but the error says not why.
const h2NotEstablished = "http2: client conn could not be established"

// named returns err, or for h2NotEstablished, the error of the server's
// close, caused by [interceptors.ErrNotSent].
func (t *cleartextTransport) named(err error) error {
	if silent := t.silent.Load(); silent != nil && err.Error() == h2NotEstablished {
		return notSentError{fmt.Errorf("the server at %s closed the connection before it answered: %w", t.addr, *silent)}
	}
	return err
}

// CloseIdleConnections closes the idle connections of both protocols.
func (t *cleartextTransport) CloseIdleConnections() {
	t.h2c.CloseIdleConnections()
	if h1 := t.http1.Load(); h1 != nil {
		h1.CloseIdleConnections()
	}
}

// http1Transport returns the HTTP/1.1 transport of the address, made at its
// first use: a client of kit servers alone never makes one.
func (t *cleartextTransport) http1Transport() *http.Transport {
	if h1 := t.http1.Load(); h1 != nil {
		return h1
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	h1 := newLeafTransport(t.cfg, &protocols)
	h1.MaxIdleConns, h1.MaxIdleConnsPerHost, h1.MaxConnsPerHost = http1IdleConns, http1IdleConns, http1MaxConns
	if !t.http1.CompareAndSwap(nil, h1) {
		return t.http1.Load() // another call's, made at the same time; h1 opened nothing
	}
	return h1
}

// dial opens an h2c connection that looks at its server's first bytes. It
// refuses while the address is known to speak HTTP/1.x only: the calls
// that get there began on an h2c connection that its server's HTTP/1.x
// answer closed, before they were written on it, and net/http sends them
// again on a new one (after a second's backoff the second time); refused,
// they go over HTTP/1.1 at once, and the server sees no more prefaces.
func (t *cleartextTransport) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if t.knownHTTP1() {
		return nil, &http1AnswerError{addr: t.addr}
	}
	c, err := t.cfg.DialFunc(ctx, network, addr)
	if err != nil {
		return c, err
	}
	return &sniffConn{Conn: c, peer: t}, nil
}

// sawHTTP1 records that a connection's server answered in HTTP/1.x.
func (t *cleartextTransport) sawHTTP1() {
	if t.http1Until.Swap(time.Now().Add(http1Memory).UnixNano()) == 0 {
		t.logger.Info("HTTP client: server speaks HTTP/1.x only, not h2c: calling it over HTTP/1.1", "addr", t.addr)
	}
}

// http1OnlyError is the cause of the Unavailable error of a call to an
// HTTP/1.x-only server that could not be sent again over HTTP/1.1, its
// body being gone (no GetBody). Its handler did not see it, so it is
// [interceptors.ErrNotSent] to errors.Is, which Retry retries; the
// address's next calls go over HTTP/1.1. The h2c attempt's error, cause,
// is in its text only: it is not a connection lost.
type http1OnlyError struct {
	addr        string
	cause, body error
}

func (e http1OnlyError) Error() string {
	return fmt.Sprintf("the server at %s speaks HTTP/1.x only, not HTTP/2 with prior knowledge (h2c), and the request's body could not be sent again over HTTP/1.1 (%v); "+
		"no handler saw it, and the next calls to %s go over HTTP/1.1: send it again, or give the request a GetBody (http.NewRequest does for a bytes or strings reader) "+
		"(h2c attempt: %v)", e.addr, e.body, e.addr, e.cause)
}

func (http1OnlyError) Unwrap() error { return interceptors.ErrNotSent }

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
		c.peer.http1Until.Store(0)
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
