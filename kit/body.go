package kit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
)

// bodyDeadline bounds the time a call's request body takes to arrive, for
// the procedures whose client sends one message: connect reads that body
// before any interceptor runs, so the call's deadline does not cover it,
// and neither net/http (whose ReadTimeout would also cut long streams)
// nor the HTTP/2 pings (which a live client answers) do. Without it, a
// client that sends the headers and then trickles or withholds the body
// holds a goroutine, its buffers and a connection for as long as it likes.
//
// Over HTTP/1.1 the connection's read deadline does it at no extra cost
// (net/http clears it when the body has been read). An HTTP/2 stream's read
// deadline costs a message to the connection's goroutine and a timer, so
// under HTTP/2 a timer of ours sets one only if the body is still being
// read when the time is up.
//
// Written by hand: net/http offers per-request read deadlines
// (ResponseController) but nothing that arms one only while a body is read.
type bodyDeadline struct {
	io.ReadCloser
	w       http.ResponseWriter
	r       *http.Request
	timeout time.Duration
	timer   *time.Timer // HTTP/2 only

	mu      sync.Mutex
	over    bool // read to its end, or the handler returned: the timer does nothing
	expired bool // the timer cut the read
}

// connReadDeadline is what an HTTP/1.1 ResponseWriter offers.
type connReadDeadline interface{ SetReadDeadline(time.Time) error }

// guardBody makes r's body fail with DeadlineExceeded if it has not been
// read to its end within timeout. The caller must call release once the
// handler has returned.
func guardBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) *bodyDeadline {
	g := &bodyDeadline{ReadCloser: r.Body, w: w, r: r, timeout: timeout}
	if c, ok := w.(connReadDeadline); !ok || r.ProtoMajor != 1 || c.SetReadDeadline(time.Now().Add(timeout)) != nil {
		g.timer = time.AfterFunc(timeout, g.expire)
	}
	r.Body = g
	return g
}

// release stops the timer and gives r its own body back: net/http's
// HTTP/1.1 server looks at it, after the handler, to decide whether the
// connection can serve another request.
func (g *bodyDeadline) release() {
	if g.timer != nil {
		g.end()
	}
	g.r.Body = g.ReadCloser
}

func (g *bodyDeadline) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if err == nil {
		return n, nil
	}
	expired := errors.Is(err, os.ErrDeadlineExceeded) // HTTP/1.1
	if g.timer != nil {
		expired = g.end()
	}
	if !expired {
		return n, err
	}
	if g.r.ProtoMajor == 1 {
		// The rest of the body may still come: this connection cannot
		// serve another request. (Under HTTP/2 the header would end the
		// whole connection.)
		g.w.Header().Set("Connection", "close")
	}
	return n, connect.NewError(connect.CodeDeadlineExceeded,
		fmt.Errorf("the request body did not arrive within %s (KIT_CALL_TIMEOUT)", g.timeout))
}

// end stops the timer, once, and reports whether it had cut the read.
func (g *bodyDeadline) end() (expired bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.over {
		g.over = true
		g.timer.Stop()
	}
	return g.expired
}

// expire ends a read still waiting for the body: a read deadline in the
// past makes it fail at once. Under g.mu, so that it never touches a
// request whose handler has returned.
func (g *bodyDeadline) expire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.over {
		return
	}
	g.over, g.expired = true, true
	// A writer that cannot (ErrNotSupported) leaves the read waiting, as
	// it would without the deadline.
	_ = http.NewResponseController(g.w).SetReadDeadline(time.Now())
}
