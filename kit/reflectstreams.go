package kit

import (
	"context"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect"
)

// reflectionStreams ends the open streams of gRPC server reflection when
// the shutdown begins, as the health service's Watch streams end: grpcurl
// keeps its reflection stream open while its call runs, and grpcui, Postman
// or Evans for a whole session, and such a stream waits in Receive for the
// client's next question, so it held every shutdown until
// Config.ShutdownTimeout cut it, and Run reported calls that did not
// finish.
//
// As the innermost interceptor of the reflection handlers, it keeps the
// streams that run; its close, registered with
// http.Server.RegisterOnShutdown, sets their read deadlines in the past.
// net/http then fails a stream's next read once the bytes its client sent
// are read, so the questions already asked are answered, and the
// interceptor reports that failure to grpcreflect as the client's end of
// the stream (io.EOF): the stream ends OK, its client goes to another
// instance, and nothing logs an error. A stream that begins once close has
// run ends at once. Reflection is a bidi stream, which connect serves over
// HTTP/2 only, where a read deadline is the stream's own.
type reflectionStreams struct {
	mu      sync.Mutex
	closing bool
	open    map[*streamBody]struct{}
}

// close ends the open streams and those that begin later.
func (rs *reflectionStreams) close() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.closing = true
	for body := range rs.open {
		_ = body.rc.SetReadDeadline(time.Now())
	}
}

func (rs *reflectionStreams) isClosing() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.closing
}

// WrapUnary implements connect.Interceptor: reflection has no unary method.
func (rs *reflectionStreams) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return next
}

// WrapStreamingClient implements connect.Interceptor: servers only.
func (rs *reflectionStreams) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler keeps the stream's body, after the deadlines
// interceptor has set its read deadline (which would replace close's),
// until next returns: net/http panics on a ResponseController used after
// its handler returned.
func (rs *reflectionStreams) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		body, ok := ctx.Value(bodyControllerKey{}).(*streamBody)
		if !ok { // mounted without serviceHandler
			return next(ctx, conn)
		}
		rs.mu.Lock()
		if rs.closing {
			rs.mu.Unlock()
			return nil
		}
		if rs.open == nil {
			rs.open = make(map[*streamBody]struct{})
		}
		rs.open[body] = struct{}{}
		rs.mu.Unlock()
		defer func() {
			rs.mu.Lock()
			delete(rs.open, body)
			rs.mu.Unlock()
		}()
		return next(ctx, endingConn{conn, rs})
	}
}

// endingConn reads a failed read at shutdown as the client's end.
type endingConn struct {
	connect.StreamingHandlerConn
	rs *reflectionStreams
}

func (c endingConn) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if err != nil && c.rs.isClosing() {
		return io.EOF
	}
	return err
}
