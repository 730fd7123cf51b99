package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"connectrpc.com/connect"
)

// Recovery returns an interceptor that turns a panic in a handler, or in an
// interceptor it wraps, into an Internal error for that call only: the
// server keeps serving. The caller gets "internal error" and nothing of the
// panic. http.ErrAbortHandler is re-panicked, as net/http expects.
//
// The panic is logged once, with its value and stack: by the [Logging]
// interceptor's line for the call when Logging wraps Recovery (as in
// [Default]), otherwise by Recovery itself on logger (a nil logger discards).
// It is counted in grpc_req_panics_recovered_total by the [Metrics]
// interceptor when Metrics wraps Recovery (as in Default). The error wraps
// a value whose method PanicValue() string gives the panic's value, for
// records kept for operators (errors.As finds it).
//
// Recovery only acts on servers: on a client, a panic belongs to the calling
// goroutine, and Recovery passes calls through untouched.
func Recovery(logger *slog.Logger) connect.Interceptor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &recovery{logger: logger}
}

// panicError is a recovered panic. Its message, which is what the caller
// sees, says nothing of the panic; Logging and Metrics find it in the error
// chain.
type panicError struct {
	value string
	stack string
}

func (e *panicError) Error() string { return "internal error" }

// PanicValue returns the panic's value, as text. The caller of the call
// sees only "internal error"; code that keeps records of failures for
// operators can say what panicked, by finding in the call's error (with
// errors.As) a value with this method: pubsub's dead letters do.
func (e *panicError) PanicValue() string { return e.value }

type recovery struct {
	logger *slog.Logger
}

func (r *recovery) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (resp connect.AnyResponse, err error) {
		spec := req.Spec()
		if spec.IsClient {
			return next(ctx, req)
		}
		// The spec read before the call: a handler that passes its own
		// request to a connect client gets it back with the client call's.
		defer r.recoverUnary(ctx, &spec, &resp, &err)
		return next(ctx, req)
	}
}

// recoverUnary is WrapUnary's deferred call (a method rather than a
// closure, to keep the frame that stays on the stack during the call small).
func (r *recovery) recoverUnary(ctx context.Context, spec *connect.Spec, resp *connect.AnyResponse, err *error) {
	if p := recover(); p != nil {
		*resp, *err = nil, r.recovered(ctx, *spec, p)
	}
}

func (r *recovery) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = r.recovered(ctx, conn.Spec(), p)
			}
		}()
		return next(ctx, conn)
	}
}

func (r *recovery) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// recovered builds the call's error from the panic value p, and logs the
// panic unless Logging will.
func (r *recovery) recovered(ctx context.Context, spec connect.Spec, p any) error {
	if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		panic(p) //nolint:forbidigo // net/http's way to abort a response
	}
	pe := &panicError{value: fmt.Sprint(p), stack: panicStack(debug.Stack())}
	if !loggedByLogging(ctx, spec.Procedure) {
		attrs := []slog.Attr{slog.String("procedure", spec.Procedure)}
		attrs = appendCommon(ctx, attrs, RequestIDFrom(ctx), nil, pe)
		if r.logger.Enabled(ctx, slog.LevelError) {
			emit(ctx, r.logger.Handler(), slog.LevelError, time.Now(), "panic", attrs)
		}
	}
	return connect.NewError(connect.CodeInternal, pe)
}

// panicStack drops from a stack taken while recovering the frames of the
// recovery itself: the goroutine line, then the frames from the panic on.
func panicStack(stack []byte) string {
	s := string(stack)
	header, rest, ok := strings.Cut(s, "\n")
	if !ok {
		return s
	}
	if i := strings.Index(rest, "\npanic("); i >= 0 {
		return header + rest[i:]
	}
	return s
}
