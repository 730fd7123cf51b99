package kit

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/connectkit/connectkit/internal/batchconn"
	"github.com/connectkit/connectkit/internal/connctx"
)

// bodyTimer bounds the time a call's request body takes to arrive, for the
// procedures whose client sends one message: connect reads that body before
// any interceptor runs, so the call's deadline does not cover it, and
// neither net/http (whose ReadTimeout would also cut long streams) nor the
// HTTP/2 pings (which a live client answers) do. Without it, a client that
// sends the headers and then trickles or withholds the body holds a
// goroutine, its buffers and a connection for as long as it likes. A read
// cut by the deadline fails with os.ErrDeadlineExceeded, which connect
// answers as DeadlineExceeded with the error's text as its message: over
// HTTP/1.x, [bodyDeadlineMessage], which the connection's reads cut by
// this deadline return in place of the socket's error (see
// [setBodyReadDeadline] and [Server.batching]) at no cost to a read that
// succeeds (with frame batching off, the socket's error, which names
// both ends' addresses); over HTTP/2, net/http's "i/o timeout", which
// names nothing (net/http makes that error, and only a wrapper of every
// call's body, an allocation a call, could replace it).
//
// Over HTTP/1.1 the connection's read deadline does it at no extra cost:
// net/http clears it when the body has been read, and resets it before the
// connection's next request. An HTTP/2 stream's read deadline costs a
// message to the connection's goroutine and a timer, so under HTTP/2 a
// timer of ours sets it only when the time is up (if the body has been read
// by then, that changes nothing). A REST route's call over HTTP/1.1, whose
// ResponseWriter is vanguard's and sets no deadlines, has such a timer
// too, which sets the connection's read deadline, with the same message.
//
// The request's Body is never wrapped: net/http's HTTP/1.1 server decides
// whether a connection whose request body was not read to its end can
// serve another request by looking at the Body while the response is
// written, and a wrapper would hide an unread body from it.
//
// Under HTTP/2 the same timer also bounds a unary call's response: a
// client that reads its socket and answers pings but grants the stream no
// flow-control window would hold the handler in its write (with the
// response's buffers) for as long as it likes. Once the body's time is up,
// the timer waits on for the rest of the call's deadline and the stall
// timeout a stream's Send gets (see [sendGuard]); a handler still running
// then gets a write deadline in the past, which resets the stream.
//
// Written by hand: net/http offers per-request read deadlines
// (ResponseController) but nothing that arms one only when it is due.
//
// A call's bodyTimer goes back to [bodyTimers] when its handler returned
// before the timer's last arming fired, and the next call re-arms it,
// time.Timer and all: see [bodyTimers].
type bodyTimer struct {
	w     http.ResponseWriter
	r     *http.Request // the call's; nil for a response's timer
	timer *time.Timer   // runs expire; made on first use, then Reset
	stall time.Duration // from the body's time to the response's; 0: none

	mu   sync.Mutex
	over bool // the handler returned: the timer does nothing
	late bool // the body's time is up: the next expiry is the response's
}

// bodyTimers holds the [bodyTimer]s of calls whose handler returned before
// their timer fired. An AfterFunc timer whose Stop returned true never
// runs its func, so nothing of the last call's can reach the next one's: over
// HTTP/2, where every unary call with a body arms one, this saves a call
// the bodyTimer, its time.Timer and the func value of its expire (three
// allocations, 224 bytes; BENCHMARKS.md section 35). A timer whose Stop
// returned false (it fired, and was not re-armed since) is left to the
// collector: its expire may still be waiting for g.mu. One that fired for
// the body and was re-armed for the response (see [bodyTimer.expire]) goes
// back when that Stop returns true, safely: it re-armed under g.mu, which
// release holds while it stops it, so that run of expire has returned.
var bodyTimers sync.Pool

// bodyDeadlineMessage is the message of the DeadlineExceeded error that a
// call whose request body did not arrive in time gets over HTTP/1.x (see
// [bodyTimer]). Only the read deadline that [setBodyReadDeadline] sets
// says it: the others of kit's connections (net/http's header and idle
// timeouts, a TLS handshake's, a handler's own, a hijacked connection's,
// kit's for client streams, whose Receive has words of its own,
// [receiveDeadline]) keep the socket's error.
const bodyDeadlineMessage = "request body not received within the call's deadline"

// setBodyReadDeadline sets the read deadline of r's HTTP/1.x connection,
// whose deadlines w sets (its ResponseWriter, or a ResponseController of
// it), for r's body: on kit's main listener, with frame batching, a read
// it cuts fails with [bodyDeadlineMessage]
// (batchconn.SetMessageReadDeadline); elsewhere with the socket's error.
func setBodyReadDeadline(w connDeadlines, r *http.Request, t time.Time) error {
	if c := connctx.FromContext(r.Context()); c != nil {
		if ok, err := batchconn.SetMessageReadDeadline(c.Conn, t); ok {
			return err
		}
	}
	return w.SetReadDeadline(t)
}

// connDeadlines is what an HTTP/1.1 ResponseWriter offers.
type connDeadlines interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// guardBody makes r's body reads fail once timeout has passed, and its
// response's writes once stall more has passed (0: never). The caller must
// call release once the handler has returned.
//
// Over HTTP/1.1 the response's bound is the connection's write deadline,
// which net/http clears once the response has been written, its last
// buffered bytes included: a client that stops reading a response larger
// than the sockets' buffers would otherwise hold the handler in its write.
func guardBody(w http.ResponseWriter, r *http.Request, timeout, stall time.Duration) *bodyTimer {
	if c, ok := w.(connDeadlines); ok && r.ProtoMajor == 1 {
		now := time.Now()
		if setBodyReadDeadline(c, r, now.Add(timeout)) == nil {
			if stall > 0 {
				_ = c.SetWriteDeadline(now.Add(timeout + stall))
			}
			return nil
		}
	}
	return armBodyTimer(w, r, timeout, stall, false)
}

// armBodyTimer returns a [bodyTimer] from [bodyTimers], or a new one, armed
// to expire after after.
func armBodyTimer(w http.ResponseWriter, r *http.Request, after, stall time.Duration, late bool) *bodyTimer {
	g, _ := bodyTimers.Get().(*bodyTimer)
	if g == nil {
		g = new(bodyTimer)
	}
	// Under g.mu: a timeout already due (a client's "Grpc-Timeout: 1n")
	// runs expire, which re-arms g.timer, before AfterFunc returns.
	g.mu.Lock()
	g.w, g.r, g.stall, g.over, g.late = w, r, stall, false, late
	if g.timer == nil {
		g.timer = time.AfterFunc(after, g.expire)
	} else {
		g.timer.Reset(after)
	}
	g.mu.Unlock()
	return g
}

// guardResponse makes the writes of r's response fail once after has
// passed, for a unary call without a body (a Connect GET): as guardBody
// does, without the body. The caller must call release once the handler
// has returned.
func guardResponse(w http.ResponseWriter, r *http.Request, after time.Duration) *bodyTimer {
	if c, ok := w.(connDeadlines); ok && r.ProtoMajor == 1 && c.SetWriteDeadline(time.Now().Add(after)) == nil {
		return nil
	}
	return armBodyTimer(w, nil, after, 0, true)
}

// release stops the timer; after it, the timer touches nothing of a
// request whose handler has returned. A timer stopped before it fired goes
// back to [bodyTimers].
func (g *bodyTimer) release() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.over = true
	stopped := g.timer.Stop()
	if stopped {
		g.w, g.r = nil, nil
	}
	g.mu.Unlock()
	if stopped {
		bodyTimers.Put(g)
	}
}

// expire makes a read still waiting for the body fail at once, and arms
// the timer for the response; at the response's expiry, it resets the
// stream. Under g.mu, so that it never touches a request whose handler has
// returned.
func (g *bodyTimer) expire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.over {
		return
	}
	// A writer that cannot (ErrNotSupported) leaves the read or write
	// waiting, as it would without the deadline.
	rc := http.NewResponseController(g.w)
	if g.late {
		_ = rc.SetWriteDeadline(time.Now())
		return
	}
	if g.r.ProtoMajor == 1 {
		// An HTTP/1.x call whose writer offers no deadlines of its own
		// (a REST call's, vanguard's) has its body cut by the
		// connection's read deadline all the same, which says
		// [bodyDeadlineMessage] as guardBody's does. HTTP/2's is the
		// stream's: the connection's would cut its other streams.
		_ = setBodyReadDeadline(rc, g.r, time.Now())
	} else {
		_ = rc.SetReadDeadline(time.Now())
	}
	if g.stall > 0 {
		g.late = true
		g.timer.Reset(g.stall)
	}
}

// boundUnreadBody bounds net/http's reading of what is left of an
// HTTP/1.x request's body once its handler has returned, to after from
// now (kit passes KIT_READ_HEADER_TIMEOUT): it gives the connection a read
// deadline when the body may hold more than was read. Call it from the
// handler net/http called, after the handlers it serves have returned.
//
// net/http reads up to 256 KiB of a body its handler left unread before it
// writes the response (so that the connection can serve another request),
// and it reads what is left in Close too (a request with "Expect:
// 100-continue", whose connection it closes, after the response); nothing
// bounds those reads when kit has not (kit sets no ReadTimeout, see
// [Server.newHTTPServer], and [guardBody] bounds only the bodies of the
// calls of mounted services). So a handler that answers without reading a
// body (a REST GET, a 404, a 405) left a client trickling or withholding
// that body the connection and its goroutine for as long as it liked.
// With the deadline, a body that is not in by then is cut, the response
// written, and the connection closed.
//
// A body read to its end needs no deadline, and must not get one: net/http
// then waits on the socket for the next request in the background, and
// our deadline passing before the response is written would end that wait
// with an error that cancels the connection's later requests. A body of
// known length tells that at once: a Read of nothing returns io.EOF. A
// chunked body's Read of nothing may wait for the next chunk's header, so
// it is tried under the deadline, which is cleared again if the body
// turned out to be read.
//
// First a Write of nothing: on a request expecting 100-continue whose
// body was never read nor its response written, the Read would send the
// 100 Continue and invite the body, and a Write stops that, as writing a
// response does (writing the 200 header that net/http would write next
// anyway, if the handler wrote none); it fails on a hijacked connection,
// which is no longer net/http's to give a deadline.
func boundUnreadBody(w http.ResponseWriter, r *http.Request, after time.Duration) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	if _, err := w.Write(nil); err != nil {
		return
	}
	if r.ContentLength > 0 {
		if _, err := r.Body.Read(nil); err != nil {
			return // read to its end (io.EOF), closed, or failed: nothing is read again
		}
	}
	c, ok := w.(connDeadlines)
	if !ok || c.SetReadDeadline(time.Now().Add(after)) != nil || r.ContentLength > 0 {
		return
	}
	if _, err := r.Body.Read(nil); errors.Is(err, io.EOF) || errors.Is(err, http.ErrBodyReadAfterClose) {
		_ = c.SetReadDeadline(time.Time{}) // as net/http left it, see above
	}
}
