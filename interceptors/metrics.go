package interceptors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// DefaultMaxProcedures is the default cap on distinct procedures (and on
// distinct message destinations) that get series of their own.
const DefaultMaxProcedures = 1000

// Metrics returns an interceptor that counts and times every call in reg,
// with the metric names and labels of go-grpc-prometheus and of
// go-grpc-middleware's providers/prometheus, so that their dashboards and
// alerts work unchanged:
//
//	grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//	grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//	grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method} (histogram)
//	grpc_server_msg_received_total{grpc_type,grpc_service,grpc_method}
//	grpc_server_msg_sent_total{grpc_type,grpc_service,grpc_method}
//
// and the same grpc_client_* families on clients. grpc_type is unary,
// client_stream, server_stream or bidi_stream; grpc_code is the gRPC name of
// the code (OK, InvalidArgument, …). On top of those, with the same labels:
// grpc_server_requests_in_flight and grpc_client_requests_in_flight
// (gauges), grpc_server_started_by_protocol_total and
// grpc_client_started_by_protocol_total (plus a protocol label: connect,
// grpc, grpcweb, or rest for a call that came in over a REST route of
// kit.Server's, which vanguard serves as a Connect call), and grpc_req_panics_recovered_total (the panics that
// [Recovery], inside Metrics, turned into errors; the name of
// go-grpc-middleware's recovery example).
//
// Message publishes and deliveries that package pubsub presents as calls
// are recorded in pubsub_published_total{topic,code},
// pubsub_handled_total{topic,subscription,outcome},
// pubsub_handling_seconds{topic,subscription} and
// pubsub_panics_recovered_total{topic,subscription} instead.
//
// The handling-time histograms carry an exemplar, {trace_id="…"}, for a
// call or delivery whose span this process made and sampled ([Tracing]
// before Metrics, as in [Default]); Prometheus reads exemplars from the
// OpenMetrics exposition only.
//
// Past [DefaultMaxProcedures] distinct procedures (see [WithMaxProcedures]),
// further ones share the series of grpc_service="other",
// grpc_method="other" (topic and subscription "other" for messages).
//
// reg must not be nil: there is no default registry. Registering in a
// registry that already has these metrics from another Metrics interceptor
// shares them; any other conflict is an error.
func Metrics(reg prometheus.Registerer, opts ...MetricsOption) (connect.Interceptor, error) {
	if reg == nil {
		return nil, errors.New("interceptors: Metrics needs a prometheus.Registerer")
	}
	cfg := metricsConfig{buckets: prometheus.DefBuckets, maxProcedures: DefaultMaxProcedures}
	for _, opt := range opts {
		opt.applyToMetrics(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &metricsInterceptor{}
	var err error
	if m.server, err = newSideMetrics(reg, "server", &cfg); err != nil {
		return nil, err
	}
	if m.client, err = newSideMetrics(reg, "client", &cfg); err != nil {
		return nil, err
	}
	if m.pubsub, err = newPubsubMetrics(reg, &cfg); err != nil {
		return nil, err
	}
	return m, nil
}

// WithHistogramBuckets sets the buckets (upper bounds, in seconds) of the
// handling-time histograms. Default: prometheus.DefBuckets, as
// go-grpc-prometheus.
func WithHistogramBuckets(buckets ...float64) MetricsOption {
	buckets = slices.Clone(buckets)
	return metricsOption(func(c *metricsConfig) { c.buckets = buckets })
}

// WithNativeHistograms makes the handling-time histograms
// (grpc_server_handling_seconds, grpc_client_handling_seconds,
// pubsub_handling_seconds) native histograms too. Each keeps its classic
// buckets, so that dashboards and alerts on _bucket{le} work unchanged,
// and adds exponential buckets, each at most 10% wider than the one below
// (client_golang's NativeHistogramBucketFactor 1.1), at most 160 of them
// per series, their resolution halved when more would be needed and reset
// after an hour at the earliest. A scraper sees them only in the protobuf
// exposition, which Prometheus asks for when native histograms are on
// (scrape_native_histograms, or --enable-feature=native-histograms before
// Prometheus 3.8), and which then stores the classic buckets too only
// with always_scrape_classic_histograms; the text and OpenMetrics
// expositions show the classic buckets alone. Default off: an observation then also costs the
// exponential bucket's lookup (BENCHMARKS.md, section 13).
func WithNativeHistograms() MetricsOption {
	return metricsOption(func(c *metricsConfig) { c.native = true })
}

// The shape of the native histograms of WithNativeHistograms, as
// client_golang's documentation suggests it.
const (
	nativeBucketFactor    = 1.1
	nativeMaxBucketNumber = 160
	nativeMinReset        = time.Hour
)

// WithMaxProcedures caps the distinct procedures, and separately the
// distinct message destinations, that get series of their own. Default
// [DefaultMaxProcedures].
func WithMaxProcedures(n int) MetricsOption {
	return metricsOption(func(c *metricsConfig) { c.maxProcedures = n })
}

type metricsConfig struct {
	buckets       []float64
	maxProcedures int
	native        bool // WithNativeHistograms
}

// histogramOpts returns the options of a handling-time histogram.
func (c *metricsConfig) histogramOpts(name, help string) prometheus.HistogramOpts {
	opts := prometheus.HistogramOpts{Name: name, Help: help, Buckets: c.buckets}
	if c.native {
		opts.NativeHistogramBucketFactor = nativeBucketFactor
		opts.NativeHistogramMaxBucketNumber = nativeMaxBucketNumber
		opts.NativeHistogramMinResetDuration = nativeMinReset
	}
	return opts
}

func (c *metricsConfig) validate() error {
	if c.maxProcedures < 1 {
		return fmt.Errorf("interceptors: WithMaxProcedures(%d): must be at least 1", c.maxProcedures)
	}
	if len(c.buckets) == 0 || !slices.IsSorted(c.buckets) {
		return fmt.Errorf("interceptors: WithHistogramBuckets(%v): want at least one bucket, in increasing order", c.buckets)
	}
	return nil
}

type metricsInterceptor struct {
	server, client *sideMetrics
	pubsub         *pubsubMetrics
}

func (m *metricsInterceptor) side(spec connect.Spec) *sideMetrics {
	if spec.IsClient {
		return m.client
	}
	return m.server
}

func (m *metricsInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		spec, peer := req.Spec(), req.Peer()
		if info := msgctx.ForRequestOf(ctx, req, &spec, &peer); info != nil {
			return m.unaryMessage(ctx, info, req, next)
		}
		// As in Logging, the work is kept out of this frame, which stays on
		// the stack while the handler runs.
		call := m.beginUnary(spec, callProtocol(&peer))
		defer call.pm.inFlight.Dec() // also when a panic goes through
		resp, err := next(ctx, req)
		call.end(ctx, err)
		return resp, err
	}
}

func (m *metricsInterceptor) unaryMessage(ctx context.Context, info *msgctx.Info, req connect.AnyRequest, next connect.UnaryFunc) (connect.AnyResponse, error) {
	var start time.Time // only a delivery's handling is timed: no clock read for a publish
	if info.Operation != msgctx.Publish {
		// pubsub read the clock as the chain began: no second read here.
		if start = info.Start; start.IsZero() {
			start = time.Now()
		}
	}
	resp, err := next(ctx, req)
	m.pubsub.observe(ctx, info, start, err)
	return resp, err
}

// unaryMetrics is a unary call being counted.
type unaryMetrics struct {
	pm       *procMetrics
	start    time.Time
	isClient bool
}

// beginUnary counts the start of a unary call of spec over protocol and
// its request message.
func (m *metricsInterceptor) beginUnary(spec connect.Spec, protocol string) unaryMetrics {
	c := unaryMetrics{pm: m.side(spec).lookup(spec), start: time.Now(), isClient: spec.IsClient}
	c.pm.begin(protocol)
	if c.isClient {
		c.pm.sent.Inc()
	} else {
		c.pm.received.Inc()
	}
	return c
}

// end counts a unary call's end and, on success, its response message.
func (c *unaryMetrics) end(ctx context.Context, err error) {
	if err == nil {
		if c.isClient {
			c.pm.received.Inc()
		} else {
			c.pm.sent.Inc()
		}
	}
	c.pm.end(ctx, c.start, err)
}

func (m *metricsInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		pm := m.server.lookup(conn.Spec())
		peer := conn.Peer()
		pm.begin(callProtocol(&peer))
		defer pm.inFlight.Dec()
		err := next(ctx, &handlerStream{
			StreamingHandlerConn: conn,
			onSend:               func(any) { pm.sent.Inc() },
			onReceive:            func(any) { pm.received.Inc() },
		})
		pm.end(ctx, start, err)
		return err
	}
}

func (m *metricsInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		start := time.Now()
		pm := m.client.lookup(spec)
		conn := next(ctx, spec)
		pm.begin(conn.Peer().Protocol)
		s := observeClientStream(ctx, conn, func(_ *clientStream, err error) {
			pm.inFlight.Dec()
			pm.end(ctx, start, err)
		})
		s.onSend = func(any) { pm.sent.Inc() }
		s.onReceive = func(any) { pm.received.Inc() }
		return s
	}
}

func (pm *procMetrics) begin(protocol string) {
	pm.started.Inc()
	pm.protocolCounter(protocol).Inc()
	pm.inFlight.Inc()
}

func (pm *procMetrics) end(ctx context.Context, start time.Time, err error) {
	observeSince(ctx, pm.handling, start)
	pm.handledCounter(codeOf(err)).Inc()
	if pm.side.panics != nil && panicOf(err) != nil {
		pm.panicCounter().Inc()
	}
}

// observeSince records the seconds since start in h. When ctx's span is one
// of this process and sampled, the observation carries the span's trace id
// as an exemplar, {trace_id="…"} (shown in the OpenMetrics exposition only),
// so that a dashboard goes from a latency bucket to a trace that the
// exporter sent. A caller's span context alone (no span of ours: tracing
// off, or propagation only) or an unsampled span gives none, and costs no
// allocation.
func observeSince(ctx context.Context, h prometheus.Observer, start time.Time) {
	d := time.Since(start).Seconds()
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		noteNoSpan(ctx) // for Logging's line, when Logging wraps Metrics
	} else if sc.IsSampled() && !sc.IsRemote() {
		if eo, ok := h.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(d, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	h.Observe(d)
}
