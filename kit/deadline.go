package kit

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/internal/deadline"
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
		timeout := d.unary
		if deadline, ok := ctx.Deadline(); ok {
			if d.maxUnary <= 0 || time.Until(deadline) <= d.maxUnary {
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
}

func (d deadlines) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler gives streams that carry no deadline the default one.
// On streams mounted with [Server.Mount] it also makes the deadline end a
// Receive that waits on the request body (Receive does not watch its
// context, so a client that keeps its stream open and sends nothing would
// otherwise hold the handler past any deadline), and ends a Send that
// cannot complete within sendStallTimeout (see [sendGuard]).
func (d deadlines) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if _, ok := ctx.Deadline(); !ok && d.stream > 0 {
			if c := deadline.New(ctx, d.stream); c != nil {
				defer c.Cancel()
				ctx = c
			}
		}
		body, ok := ctx.Value(bodyControllerKey{}).(*streamBody)
		if !ok {
			return next(ctx, conn)
		}
		streams := conn.Spec().StreamType
		if at, ok := ctx.Deadline(); ok && streams&connect.StreamTypeClient != 0 && body.rc.SetReadDeadline(at) == nil {
			conn = receiveDeadline{conn}
		}
		if streams&connect.StreamTypeServer != 0 {
			g := newSendGuard(conn, body)
			defer g.release()
			conn = g
		}
		return next(ctx, conn)
	}
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

// streamBody sets a client stream's request body read deadline.
type streamBody struct {
	rc        *http.ResponseController
	sendStall time.Duration // see sendGuard
}
