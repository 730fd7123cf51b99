package interceptors

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/connectkit/connectkit/internal/w3c"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names the tracer of message spans.
const instrumentationName = "github.com/connectkit/connectkit/interceptors"

// Tracing returns an interceptor that traces every call with OpenTelemetry,
// with the spans of connectrpc.com/otelconnect. A server span continues the
// caller's W3C trace context (otelconnect's WithTrustRemote: services trust
// their callers' trace ids; for calls from the public internet, see
// [WithPublicEndpoint]), a client span injects it. It records no OpenTelemetry
// metrics (otelconnect's WithoutMetrics: [Metrics] counts calls in
// Prometheus, and a second set would cost time on every call); server
// spans carry the caller's address as network.peer.address and
// network.peer.port (otelconnect's WithServerPeerAttributes, as the RPC
// semantic conventions recommend; spans are no metric, whose labels
// they would multiply). It makes those spans itself, with this package's
// instrumentation scope, doing the work of a span's attributes and status
// only when the span is sampled, unless [WithOtelconnectOptions] asks for
// otelconnect.
//
// A message publish or delivery that package pubsub presents as a call gets
// a span after the OpenTelemetry messaging conventions instead: "publish
// <topic>" of kind PRODUCER, which injects its context into the message
// headers, or "process <topic>" of kind CONSUMER, which continues the
// context found in them; both with messaging.system,
// messaging.destination.name, messaging.operation.type and .name,
// messaging.message.id, server.address and server.port when the broker
// knows its server's (pubsub.ServerAddresser; sampled spans only) and,
// for deliveries, messaging.consumer.group.name.
//
// Tracing must wrap [Logging] for log lines to carry trace and span ids.
func Tracing(opts ...TracingOption) (connect.Interceptor, error) {
	var cfg tracingConfig
	for _, opt := range opts {
		opt.applyToTracing(&cfg)
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetTracerProvider()
	}
	if cfg.propagator == nil {
		cfg.propagator = w3c.New(true, true)
	}
	if isNoop(cfg.provider) && len(cfg.otelconnect) == 0 {
		return propagationOnly{cfg.propagator, cfg.public}, nil
	}
	t := &tracing{
		tracer:     cfg.provider.Tracer(instrumentationName),
		propagator: cfg.propagator,
		public:     cfg.public,
	}
	if len(cfg.otelconnect) > 0 {
		base := []otelconnect.Option{
			otelconnect.WithTracerProvider(cfg.provider),
			otelconnect.WithPropagator(cfg.propagator),
			otelconnect.WithoutMetrics(),
			otelconnect.WithServerPeerAttributes(),
		}
		if !cfg.public {
			base = append(base, otelconnect.WithTrustRemote())
		}
		rpc, err := otelconnect.NewInterceptor(append(base, cfg.otelconnect...)...)
		if err != nil {
			return nil, fmt.Errorf("interceptors: failed to create otelconnect interceptor: %w", err)
		}
		t.otelconnect = rpc
	}
	return t, nil
}

// WithTracerProvider sets the provider of the spans. Default: OpenTelemetry's
// global provider, which does nothing unless the program set one; a
// kit.Server passes the one it builds from the OTEL_* variables (the
// README's section "Traces").
//
// With a no-op provider (go.opentelemetry.io/otel/trace/noop, which is what
// a kit.Server uses while OTEL_TRACES_EXPORTER is none), Tracing only passes
// trace context on: a server puts the caller's in the context (logs show
// its trace id, outgoing calls carry it), a client injects the context's.
// That is what otelconnect would do with such a provider, at a fraction of
// the cost.
func WithTracerProvider(provider trace.TracerProvider) TracingOption {
	return tracingOption(func(c *tracingConfig) { c.provider = provider })
}

// WithPropagator sets how trace context travels in headers. Default: W3C
// Trace Context and Baggage (traceparent, tracestate, baggage), whatever the
// global propagator is.
func WithPropagator(propagator propagation.TextMapPropagator) TracingOption {
	return tracingOption(func(c *tracingConfig) { c.propagator = propagator })
}

// WithPublicEndpoint makes a server take its callers for untrusted, as
// otelhttp's option of that name does. It is for services that the public
// internet or browsers call: a server span begins a trace of its own, with
// a link to the caller's span (when the caller sent one) instead of
// continuing its trace, so that a caller can neither join its spans to
// another's trace nor decide with its sampled flag which calls are kept;
// and the caller's baggage is dropped, so that it does not travel on with
// the calls and messages the handler makes. Without spans (a no-op
// provider), the handler's context carries no trace context of the caller:
// log lines then have no trace id. Clients, and message deliveries, whose
// headers a publisher of the system wrote, are traced as without it. With
// [WithOtelconnectOptions], RPCs get otelconnect's own behaviour without
// its WithTrustRemote: a new trace linked to the caller's, but the caller's
// baggage kept.
func WithPublicEndpoint() TracingOption {
	return tracingOption(func(c *tracingConfig) { c.public = true })
}

// WithOtelconnectOptions hands the tracing of RPCs to otelconnect itself,
// with these options after ours: for example otelconnect.WithFilter,
// WithTraceRequestHeader or WithServerPeerAttributes. The spans are the
// same, but otelconnect does its per-call work for unsampled spans too
// (BENCHMARKS.md, section 2).
func WithOtelconnectOptions(opts ...otelconnect.Option) TracingOption {
	return tracingOption(func(c *tracingConfig) { c.otelconnect = append(c.otelconnect, opts...) })
}

type tracingConfig struct {
	provider    trace.TracerProvider
	propagator  propagation.TextMapPropagator
	otelconnect []otelconnect.Option
	public      bool
}

type tracing struct {
	tracer      trace.Tracer
	propagator  propagation.TextMapPropagator
	otelconnect *otelconnect.Interceptor // traces RPCs when set
	public      bool                     // callers are untrusted: see WithPublicEndpoint
}

func (t *tracing) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	var rpc connect.UnaryFunc
	if t.otelconnect != nil {
		rpc = t.otelconnect.WrapUnary(next)
	}
	start := new(startOptions)
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if info := msgctx.ForRequest(ctx, req); info != nil {
			return t.message(ctx, info, req, next)
		}
		if rpc != nil {
			return rpc(ctx, req)
		}
		return t.rpcUnary(ctx, req, next, start)
	}
}

func (t *tracing) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	if t.otelconnect != nil {
		return t.otelconnect.WrapStreamingClient(next)
	}
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		return t.rpcStreamingClient(ctx, spec, next)
	}
}

func (t *tracing) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	if t.otelconnect != nil {
		return t.otelconnect.WrapStreamingHandler(next)
	}
	start := new(startOptions)
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return t.rpcStreamingHandler(ctx, conn, next, start)
	}
}

// message traces a publish or a delivery.
func (t *tracing) message(ctx context.Context, info *msgctx.Info, req connect.AnyRequest, next connect.UnaryFunc) (connect.AnyResponse, error) {
	carrier := headerCarrier(req.Header())
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		semconv.MessagingSystemKey.String(info.System),
		semconv.MessagingDestinationName(info.Topic),
		semconv.MessagingOperationName(string(info.Operation)),
	)
	if info.MessageID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(info.MessageID))
	}
	kind := trace.SpanKindProducer
	opts := make([]trace.SpanStartOption, 2, 3)
	if info.Operation == msgctx.Publish {
		attrs = append(attrs, semconv.MessagingOperationTypeSend)
	} else {
		kind = trace.SpanKindConsumer
		attrs = append(attrs, semconv.MessagingOperationTypeProcess)
		if info.Subscription != "" {
			attrs = append(attrs, semconv.MessagingConsumerGroupName(info.Subscription))
		}
		ctx = t.propagator.Extract(ctx, carrier)
		// The messaging conventions ("Consumer spans"): a process span
		// SHOULD link to its message's creation context. That context is
		// also its parent, as they allow for a single message, so that the
		// trace reads on from the publish; the link is what tools that
		// follow messages by links (batches, other traces) look for. The
		// only remote span context a delivery's context holds is the one
		// taken from the message. A creation context that was not sampled
		// gets no link, which would point at no recorded span and cost 3
		// allocations a delivery (BenchmarkDeliveryDesign).
		if sc := trace.SpanContextFromContext(ctx); sc.IsRemote() && sc.IsSampled() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	opts[0], opts[1] = trace.WithSpanKind(kind), trace.WithAttributes(attrs...)
	ctx, span := t.tracer.Start(ctx, string(info.Operation)+" "+info.Topic, opts...)
	defer span.End()
	if info.Server != nil && span.IsRecording() {
		// Asked after the sampler, not given to it, so that an unsampled
		// message does not pay for the broker's lookup.
		if addr := info.Server(); addr != "" {
			span.SetAttributes(addressAttributes(make([]attribute.KeyValue, 0, 2), addr, semconv.ServerAddressKey, semconv.ServerPortKey)...)
		}
	}
	if info.Operation == msgctx.Publish {
		t.propagator.Inject(ctx, carrier)
	}
	resp, err := next(ctx, req)
	if err != nil {
		// As otelconnect does: the gRPC name of the code, DEADLINE_EXCEEDED.
		span.SetAttributes(semconv.ErrorTypeKey.String(strings.ToUpper(codeOf(err).String())))
		span.SetStatus(codes.Error, err.Error())
	}
	return resp, err
}
