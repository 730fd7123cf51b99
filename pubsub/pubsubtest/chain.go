package pubsubtest

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"connectrpc.com/validate"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ApproxChain returns interceptors that stand in for connectkit's default
// chain in pubsub's tests and benchmarks, outermost first: tracing
// (otelconnect, W3C trace context), one JSON-able log line per call at info
// (warn and error for failures), a counter and a histogram per procedure,
// and protovalidate. Silence successes with a logger whose level is above
// info.
func ApproxChain(logger *slog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) ([]connect.Interceptor, error) {
	tracing, err := newTracing(tp)
	if err != nil {
		return nil, err
	}
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "approx_calls_total", Help: "Calls by procedure, side and code.",
	}, []string{"procedure", "side", "code"})
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "approx_call_seconds", Help: "Call durations by procedure and side.",
	}, []string{"procedure", "side"})
	if err := reg.Register(calls); err != nil {
		return nil, err
	}
	if err := reg.Register(seconds); err != nil {
		return nil, err
	}
	return []connect.Interceptor{
		tracing,
		logging(logger),
		metrics(calls, seconds),
		validate.NewInterceptor(),
	}, nil
}

// observer is the logging and metrics stand-in: it calls observe once per
// call with how it ended. It wraps unary calls and streaming handlers (to
// measure pubsub's unary presentation against a streaming one).
type observer struct {
	observe func(ctx context.Context, spec connect.Spec, peer connect.Peer, start time.Time, err error)
}

func (o observer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		o.observe(ctx, req.Spec(), req.Peer(), start, err)
		return res, err
	}
}

func (o observer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o observer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		o.observe(ctx, conn.Spec(), conn.Peer(), start, err)
		return err
	}
}

func logging(logger *slog.Logger) connect.Interceptor {
	return observer{observe: func(ctx context.Context, spec connect.Spec, peer connect.Peer, start time.Time, err error) {
		level, code := slog.LevelInfo, "ok"
		if err != nil {
			level, code = slog.LevelWarn, connect.CodeOf(err).String()
		}
		if !logger.Enabled(ctx, level) {
			return
		}
		sc := trace.SpanContextFromContext(ctx)
		logger.LogAttrs(ctx, level, "call",
			slog.String("procedure", spec.Procedure),
			slog.String("protocol", peer.Protocol),
			slog.String("code", code),
			slog.Duration("duration", time.Since(start)),
			slog.String("trace_id", sc.TraceID().String()),
			slog.String("span_id", sc.SpanID().String()),
		)
	}}
}

func metrics(calls *prometheus.CounterVec, seconds *prometheus.HistogramVec) connect.Interceptor {
	return observer{observe: func(_ context.Context, spec connect.Spec, _ connect.Peer, start time.Time, err error) {
		side := "server"
		if spec.IsClient {
			side = "client"
		}
		procedure := strings.TrimPrefix(spec.Procedure, "/")
		code := "ok"
		if err != nil {
			code = connect.CodeOf(err).String()
		}
		calls.WithLabelValues(procedure, side, code).Inc()
		seconds.WithLabelValues(procedure, side).Observe(time.Since(start).Seconds())
	}}
}

// newTracing returns otelconnect's interceptor with W3C trace context, whose
// handler spans continue the caller's trace (as children, not links).
func newTracing(tp trace.TracerProvider) (*otelconnect.Interceptor, error) {
	return otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(propagation.TraceContext{}),
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutMetrics(),
	)
}
