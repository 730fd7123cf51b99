package kit

import (
	"context"
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

func (d deadlines) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	if d.stream <= 0 {
		return next
	}
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if _, ok := ctx.Deadline(); ok {
			return next(ctx, conn)
		}
		if c := deadline.New(ctx, d.stream); c != nil {
			defer c.Cancel()
			ctx = c
		}
		return next(ctx, conn)
	}
}
