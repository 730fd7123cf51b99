package interceptors

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/connectkit/connectkit/internal/w3c"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func isNoop(provider trace.TracerProvider) bool {
	switch provider.(type) {
	case noop.TracerProvider, *noop.TracerProvider:
		return true
	default:
		return false
	}
}

// propagationOnly is Tracing with a no-op tracer provider: no spans, only
// the trace context passed from the caller to the handler and from the
// context to outgoing calls, for RPCs and messages alike.
type propagationOnly struct {
	propagator propagation.TextMapPropagator
	public     bool // callers are untrusted: their context is not taken
}

func (p propagationOnly) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		carrier := headerCarrier(req.Header())
		if req.Spec().IsClient {
			p.propagator.Inject(ctx, carrier)
		} else if !p.public || msgctx.ForRequest(ctx, req) != nil {
			// A delivery's headers come from a publisher of the system.
			ctx = extractRemote(ctx, p.propagator, carrier)
		}
		return next(ctx, req)
	}
}

func (p propagationOnly) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		p.propagator.Inject(ctx, headerCarrier(conn.RequestHeader()))
		return conn
	}
}

func (p propagationOnly) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if !p.public {
			ctx = extractRemote(ctx, p.propagator, headerCarrier(conn.RequestHeader()))
		}
		return next(ctx, conn)
	}
}

// extractRemote puts the caller's trace context from carrier in ctx, the
// parent of a server's span (or, without spans, the context a server's
// logs and outgoing calls carry on), unless ctx has a span already: an
// outer interceptor started it.
//
// The default propagator (internal/w3c) tells when it would extract
// nothing, the usual case: a call without trace context headers then costs
// neither its Extract (~1 000 instructions for two propagators that find
// nothing) nor a walk of the whole context for a span that is not there
// (~300; BENCHMARKS.md 1.28).
func extractRemote(ctx context.Context, p propagation.TextMapPropagator, carrier headerCarrier) context.Context {
	if w, ok := p.(*w3c.Propagator); ok && !w.Carries(http.Header(carrier)) {
		return ctx
	}
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return p.Extract(ctx, carrier)
}
