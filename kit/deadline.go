package kit

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/internal/deadline"
	"github.com/connectkit/connectkit/internal/msgctx"
)

// deadlines gives calls that carry no deadline a default one and caps the
// deadline of unary calls, since connect-go sets none: without it a slow
// dependency holds a handler, and its memory, forever. A duration <= 0 is
// off. The deadline's timer starts only if something waits for it
// (internal/deadline).
type deadlines struct {
	unary, maxUnary, stream time.Duration
}

func (d deadlines) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		resp, err := d.unaryCall(ctx, req, next)
		if err != nil {
			err = cutByShutdown(ctx, err)
		}
		return resp, err
	}
}

func (d deadlines) unaryCall(ctx context.Context, req connect.AnyRequest, next connect.UnaryFunc) (connect.AnyResponse, error) {
	timeout := d.unary
	if deadline, ok := ctx.Deadline(); ok {
		if d.maxUnary <= 0 || withinMax(req, deadline, d.maxUnary) {
			return next(ctx, req)
		}
		timeout = d.maxUnary
	}
	if timeout <= 0 {
		return next(ctx, req)
	}
	if c := deadline.New(ctx, timeout); c != nil {
		defer c.Cancel()
		ctx = c
	}
	return next(ctx, req)
}

// withinMax reports whether deadline is at most max from now. A pubsub
// delivery's is its handler's AckWait, counted from msgctx.Info.Start, a
// clock reading taken before this call: a deadline at most max after it
// is at most max from now, which answers without reading the clock again
// (one read less per delivery; BENCHMARKS.md section 43). Only pubsub's
// own request is asked (a type assertion, cached at this call site): an
// RPC's context is not looked into.
func withinMax(req connect.AnyRequest, deadline time.Time, max time.Duration) bool {
	if r, ok := req.(msgctx.Request); ok {
		if info := r.MessageInfo(); !info.Start.IsZero() && deadline.Sub(info.Start) <= max {
			return true
		}
	}
	return time.Until(deadline) <= max
}

func (d deadlines) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler gives streams that carry no deadline the default one.
// On streams mounted with [Server.Mount] it also makes the deadline end a
// Receive that waits on the request body (Receive does not watch its
// context, so a client that keeps its stream open and sends nothing would
// otherwise hold the handler past any deadline), and so does the shutdown
// timeout (see [errCallsCut]); and it ends a Send that cannot complete
// within sendStallTimeout (see [sendGuard]), as well as the writing of the
// stream's end.
func (d deadlines) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := d.streamCall(ctx, conn, next)
		if err != nil {
			err = cutByShutdown(ctx, err)
		}
		return err
	}
}

func (d deadlines) streamCall(ctx context.Context, conn connect.StreamingHandlerConn, next connect.StreamingHandlerFunc) error {
	body, ok := ctx.Value(bodyControllerKey{}).(*streamBody)
	streams := conn.Spec().StreamType
	call := ctx // the call's own context, which the shutdown cuts
	if _, ok := ctx.Deadline(); !ok && d.stream > 0 {
		if c := deadline.New(ctx, d.stream); c != nil {
			defer c.Cancel()
			ctx = c
		}
	}
	if !ok {
		return next(ctx, conn)
	}
	if at, ok := ctx.Deadline(); ok && streams&connect.StreamTypeClient != 0 && body.rc.SetReadDeadline(at) == nil {
		conn = receiveDeadline{conn}
	}
	if streams&connect.StreamTypeClient != 0 {
		// After the deadline's read deadline, which would otherwise
		// replace the cut's if the shutdown cut the call in between.
		defer cutReceives(call, body).release()
	}
	// Every stream: a client stream's response, and any stream's end, once
	// its handler has returned, wait on the client as a Send does.
	g := newSendGuard(conn, body)
	defer g.ending()
	return next(ctx, g)
}

// receiveCut ends a Receive waiting on the client when the shutdown timeout
// cuts the call (see [errCallsCut]): Receive does not watch its context.
type receiveCut struct {
	ctx  context.Context
	body *streamBody
	stop func() bool

	mu   sync.Mutex
	over bool // the handler returned: its request is no longer ours to touch
}

func cutReceives(ctx context.Context, body *streamBody) *receiveCut {
	c := &receiveCut{ctx: ctx, body: body}
	c.stop = context.AfterFunc(ctx, c.cut)
	return c
}

func (c *receiveCut) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.over && errors.Is(context.Cause(c.ctx), errCallsCut) {
		_ = c.body.rc.SetReadDeadline(time.Now())
	}
}

// release stops cut for good: net/http panics on a ResponseController used
// after its handler returned.
func (c *receiveCut) release() {
	if !c.stop() {
		c.mu.Lock()
		c.over = true
		c.mu.Unlock()
	}
}

// errCallsCut is the cause with which the shutdown cancels the contexts of
// the calls still running at its timeout, [Config.ShutdownTimeout]: their
// clients get it as Unavailable, which they may retry on another instance
// (grpc-go's clients get Unavailable from a grpc-go server's Stop too),
// rather than the protocol error of a connection closed mid-call, and the
// calls are logged and counted as such, not as cancelled by their clients.
var errCallsCut = errors.New("the server is shutting down")

// cutByShutdown returns err as Unavailable if it ended a call that the
// shutdown timeout cut (a handler returning its context's error, or a
// Receive cut), and err otherwise. A handler's own connect error of code
// Unknown stays: it says the handler cannot tell what happened (a change
// stored, its event not confirmed), and a client retrying on Unavailable
// would do it twice.
func cutByShutdown(ctx context.Context, err error) error {
	if !errors.Is(context.Cause(ctx), errCallsCut) {
		return err
	}
	var ce *connect.Error
	switch connect.CodeOf(err) {
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		return connect.NewError(connect.CodeUnavailable, errCallsCut)
	case connect.CodeUnknown:
		if !errors.As(err, &ce) {
			return connect.NewError(connect.CodeUnavailable, errCallsCut)
		}
	}
	return err
}

// receiveDeadline reports a Receive cut by the read deadline as the
// call's deadline passing.
type receiveDeadline struct {
	connect.StreamingHandlerConn
}

func (c receiveDeadline) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("the stream's deadline passed while waiting for the client's next message"))
	}
	return err
}

// bodyControllerKey is the context key of a client stream's *streamBody
// (see serviceHandler).
type bodyControllerKey struct{}

// streamBody sets a stream's read and write deadlines.
type streamBody struct {
	rc        *http.ResponseController
	sendStall time.Duration // see sendGuard
	guard     *sendGuard    // set by deadlines, the last of a list (a chain may hold them twice); nil without them
}

// release stops the stream's guards, once its handler has returned (see
// [sendGuard.ending]).
func (b *streamBody) release() {
	for g := b.guard; g != nil; g = g.next {
		g.release()
	}
}
