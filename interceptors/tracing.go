package interceptors

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/connectkit/connectkit/internal/msgctx"
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
// through connectrpc.com/otelconnect: a server span continues the caller's
// W3C trace context (otelconnect's WithTrustRemote: services trust their
// callers' trace ids; an edge proxy should strip traceparent from the
// public internet), a client span injects it. It records no OpenTelemetry
// metrics (otelconnect's WithoutMetrics: [Metrics] counts calls in
// Prometheus, and a second set would cost time on every call) and no peer
// address on server spans (otelconnect's default: high cardinality; the
// log line has it).
//
// A message publish or delivery that package pubsub presents as a call gets
// a span after the OpenTelemetry messaging conventions instead: "publish
// <topic>" of kind PRODUCER, which injects its context into the message
// headers, or "process <topic>" of kind CONSUMER, which continues the
// context found in them; both with messaging.system,
// messaging.destination.name, messaging.operation.type and .name,
// messaging.message.id and, for deliveries, messaging.consumer.group.name.
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
		cfg.propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	if isNoop(cfg.provider) && len(cfg.otelconnect) == 0 {
		return propagationOnly{cfg.propagator}, nil
	}
	rpc, err := otelconnect.NewInterceptor(append([]otelconnect.Option{
		otelconnect.WithTracerProvider(cfg.provider),
		otelconnect.WithPropagator(cfg.propagator),
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutMetrics(),
	}, cfg.otelconnect...)...)
	if err != nil {
		return nil, fmt.Errorf("interceptors: failed to create otelconnect interceptor: %w", err)
	}
	return &tracing{
		rpc:        rpc,
		tracer:     cfg.provider.Tracer(instrumentationName),
		propagator: cfg.propagator,
	}, nil
}

// WithTracerProvider sets the provider of the spans. Default: OpenTelemetry's
// global provider, which does nothing unless the program set one; kit passes
// the one internal/telemetry builds from the OTEL_* variables.
//
// With a no-op provider (go.opentelemetry.io/otel/trace/noop, what
// internal/telemetry gives when no exporter is set up), Tracing only passes
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

// WithOtelconnectOptions passes more options to otelconnect, after ours:
// for example otelconnect.WithTraceRequestHeader, WithFilter or
// WithServerPeerAttributes.
func WithOtelconnectOptions(opts ...otelconnect.Option) TracingOption {
	return tracingOption(func(c *tracingConfig) { c.otelconnect = append(c.otelconnect, opts...) })
}

type tracingConfig struct {
	provider    trace.TracerProvider
	propagator  propagation.TextMapPropagator
	otelconnect []otelconnect.Option
}

type tracing struct {
	rpc        *otelconnect.Interceptor
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

func (t *tracing) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	rpc := t.rpc.WrapUnary(next)
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if info := msgctx.FromContext(ctx); info != nil {
			return t.message(ctx, info, req, next)
		}
		return rpc(ctx, req)
	}
}

func (t *tracing) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return t.rpc.WrapStreamingClient(next)
}

func (t *tracing) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return t.rpc.WrapStreamingHandler(next)
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
	if info.Operation == msgctx.Publish {
		attrs = append(attrs, semconv.MessagingOperationTypeSend)
	} else {
		kind = trace.SpanKindConsumer
		attrs = append(attrs, semconv.MessagingOperationTypeProcess)
		if info.Subscription != "" {
			attrs = append(attrs, semconv.MessagingConsumerGroupName(info.Subscription))
		}
		ctx = t.propagator.Extract(ctx, carrier)
	}
	ctx, span := t.tracer.Start(ctx, string(info.Operation)+" "+info.Topic,
		trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	defer span.End()
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
