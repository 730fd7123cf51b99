package kit

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
)

// sendStallTimeout is how long one Send on a stream may wait for the client
// to take the message. It matches batchconn's flush timeout, which cuts a
// peer that stops reading its socket.
const sendStallTimeout = 30 * time.Second

// sendGuard ends a stream whose Send cannot complete: an HTTP/2 client that
// reads its socket but grants no flow-control window, or an HTTP/1.1 client
// that stops reading, would otherwise hold the handler inside Send, where
// neither its context nor the server's shutdown reaches it, for as long as
// it answers pings. When a Send has waited sendStallTimeout, a write
// deadline in the past resets the stream (HTTP/2) or breaks the connection
// (HTTP/1.1), and Send fails with DeadlineExceeded. The wait is the
// server's sendStall: sendStallTimeout, shorter in tests. What connect
// writes once the handler has returned (a client stream's response, the
// stream's end or error) is bounded so too, from [sendGuard.ending] until
// the request's handler returns.
//
// Written by hand: net/http has per-stream write deadlines
// (ResponseController) but nothing that arms one only while a Send waits.
type sendGuard struct {
	connect.StreamingHandlerConn
	body  *streamBody
	timer *time.Timer // armed during each Send
	next  *sendGuard  // the one body held before, released with it

	mu      sync.Mutex
	over    bool // the handler returned: the timer does nothing
	expired bool // the timer cut a Send
}

func newSendGuard(conn connect.StreamingHandlerConn, body *streamBody) *sendGuard {
	g := &sendGuard{StreamingHandlerConn: conn, body: body}
	g.timer = time.AfterFunc(body.sendStall, g.expire)
	g.timer.Stop()
	g.next, body.guard = body.guard, g
	return g
}

// ending arms the timer for what connect writes once the handler has
// returned; the request's handler releases it (see [streamBody.release]).
func (g *sendGuard) ending() {
	g.timer.Reset(g.body.sendStall)
}

func (g *sendGuard) Send(msg any) error {
	g.timer.Reset(g.body.sendStall)
	err := g.StreamingHandlerConn.Send(msg)
	g.timer.Stop()
	if err != nil {
		g.mu.Lock()
		expired := g.expired
		g.mu.Unlock()
		if expired {
			return connect.NewError(connect.CodeDeadlineExceeded,
				fmt.Errorf("the client took no message for %s: %w", g.body.sendStall, errStalled))
		}
	}
	return err
}

var errStalled = errors.New("stream stalled")

func (g *sendGuard) expire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.over {
		return
	}
	g.expired = true
	_ = g.body.rc.SetWriteDeadline(time.Now())
}

// release stops the timer for good, before the request's handler returns;
// after it, the timer touches nothing of the request.
func (g *sendGuard) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.over = true
	g.timer.Stop()
}
