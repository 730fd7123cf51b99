package kit

import (
	"net/http"
	"sync"
	"time"
)

// bodyTimer bounds the time a call's request body takes to arrive, for the
// procedures whose client sends one message: connect reads that body before
// any interceptor runs, so the call's deadline does not cover it, and
// neither net/http (whose ReadTimeout would also cut long streams) nor the
// HTTP/2 pings (which a live client answers) do. Without it, a client that
// sends the headers and then trickles or withholds the body holds a
// goroutine, its buffers and a connection for as long as it likes. A read
// cut by the deadline fails with os.ErrDeadlineExceeded, which connect
// answers as DeadlineExceeded.
//
// Over HTTP/1.1 the connection's read deadline does it at no extra cost:
// net/http clears it when the body has been read, and resets it before the
// connection's next request. An HTTP/2 stream's read deadline costs a
// message to the connection's goroutine and a timer, so under HTTP/2 a
// timer of ours sets it only when the time is up (if the body has been read
// by then, that changes nothing).
//
// The request's Body is never wrapped: net/http's HTTP/1.1 server decides
// whether a connection whose request body was not read to its end can
// serve another request by looking at the Body while the response is
// written, and a wrapper would hide an unread body from it.
//
// Written by hand: net/http offers per-request read deadlines
// (ResponseController) but nothing that arms one only when it is due.
type bodyTimer struct {
	w     http.ResponseWriter
	timer *time.Timer

	mu   sync.Mutex
	over bool // the handler returned: the timer does nothing
}

// connReadDeadline is what an HTTP/1.1 ResponseWriter offers.
type connReadDeadline interface{ SetReadDeadline(time.Time) error }

// guardBody makes r's body reads fail once timeout has passed. The caller
// must call release once the handler has returned.
func guardBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) *bodyTimer {
	if c, ok := w.(connReadDeadline); ok && r.ProtoMajor == 1 && c.SetReadDeadline(time.Now().Add(timeout)) == nil {
		return nil
	}
	g := &bodyTimer{w: w}
	g.timer = time.AfterFunc(timeout, g.expire)
	return g
}

// release stops the timer; after it, the timer touches nothing of a
// request whose handler has returned.
func (g *bodyTimer) release() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.over = true
	g.timer.Stop()
}

// expire makes a read still waiting for the body fail at once. Under g.mu,
// so that it never touches a request whose handler has returned.
func (g *bodyTimer) expire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.over {
		return
	}
	// A writer that cannot (ErrNotSupported) leaves the read waiting, as
	// it would without the deadline.
	_ = http.NewResponseController(g.w).SetReadDeadline(time.Now())
}
