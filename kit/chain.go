package kit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/ruled"
	"github.com/connectkit/connectkit/internal/telemetry"
)

// quietProcedures are logged at debug when they succeed, or are streams
// their clients cancel: probes and reflection would otherwise write a line
// every few seconds.
var quietProcedures = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

// buildChainsWatched is buildChains, which logs at error if it is still
// building after chainBuildWarning, and at warn once it is done if it
// did, so that a start that was slow but not held for good says so (see
// ruled.Watched).
func (s *Server) buildChainsWatched() error {
	return ruled.Watched(s.logger, chainBuildWarning,
		"kit.New: the interceptor chain is still being built: protovalidate's validator (interceptors.Validation) may be built now, "+
			"and its build waits for good when a proto file or type is registered in protoregistry's global registries from another goroutine meanwhile; "+
			"register them before kit.New or after it returns",
		"kit.New: the interceptor chain is built after all", nil, s.buildChains)
}

// buildChains sets up tracing from the OTEL_* variables and builds the
// server and client interceptor chains. The client chain is kit's client
// chain, then [WithClientInterceptors]' interceptors, then the retries of
// [Config.ClientRetry] and the circuit breaker of [Config.ClientBreaker]
// when they are on, then the judge of [Server.HTTPClient]'s outlier
// ejection. The server order,
// outermost first:
//
//	headerFields → Tracing → RequestID → Logging → Metrics → RateLimit → MaxInFlight → Recovery → deadlines → response limit → ForwardHeaders → Validation → WithInterceptors… → handler
//
// (see [interceptors.Default] for why); [headerFields] comes first, so
// that it sees every error that goes out over gRPC; the deadlines and the response
// limit ([responseLimit]) sit inside Logging and Metrics so that calls cut
// by them are logged and counted, and inside Recovery so that nothing they
// do can crash the process. The overload limits, when on
// ([Config.RateLimit], [Config.MaxInFlight]), sit inside Logging and
// Metrics too, so that refused calls are logged and counted with their
// code, and outside all the rest, so that a refused call costs nothing
// more; the rate limit first, so that a call it refuses takes no place in
// flight, even for an instant. Without the default chain they come first,
// after headerFields.
func (s *Server) buildChains() error {
	if s.opts.noDefaultChain && s.cfg.TracePublicEndpoint {
		// Ignored, it would leave the application's own chain trusting
		// its callers' trace context while the operator asked otherwise.
		return errors.New(`kit: TracePublicEndpoint (KIT_TRACE_PUBLIC_ENDPOINT) "true": kit.WithoutDefaultInterceptors drops kit's tracing, which it configures; give interceptors.WithPublicEndpoint() to your own chain's interceptors.Default or Tracing instead`)
	}
	if s.opts.noDefaultChain && s.cfg.NativeHistograms {
		return errors.New(`kit: NativeHistograms (KIT_METRICS_NATIVE_HISTOGRAMS) "true": kit.WithoutDefaultInterceptors drops kit's metrics, which it configures; give interceptors.WithNativeHistograms() to your own chain's interceptors.Default or Metrics instead`)
	}
	tcfg, err := telemetry.ConfigFromEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("kit: %w", err)
	}
	exports, err := newTraceExportMetrics(s.registry)
	if err != nil {
		return err
	}
	if s.telemetry, err = telemetry.New(context.Background(), tcfg, telemetry.WithLogger(s.logger), telemetry.WithExportFailures(exports.failed)); err != nil {
		return fmt.Errorf("kit: tracing: %w", err)
	}
	var exporters []string
	for _, u := range s.telemetry.Unsent() {
		exporters = append(exporters, u.Exporter)
	}
	exports.start(exporters)
	deadlines := deadlines{unary: s.cfg.CallTimeout, maxUnary: s.cfg.MaxCallTimeout, stream: s.cfg.StreamTimeout}
	limit := responseLimit(s.cfg.MaxResponseBytes)
	rateLimit, inFlight := s.overload()
	breaker, err := s.clientBreaker()
	if err != nil {
		return err
	}
	retry, err := s.clientRetry()
	if err != nil {
		return err
	}
	if s.opts.noDefaultChain {
		s.serverChain = append([]connect.Interceptor{compose(headerFields{}, rateLimit, inFlight, deadlines, limit)}, s.opts.interceptors...)
		s.clientChain = withClientEnd(slices.Clone(s.opts.clientInterceptors), retry, breaker)
		return nil
	}
	opts := append([]interceptors.Option{
		interceptors.WithTracerProvider(s.telemetry.TracerProvider()),
		interceptors.WithPropagator(s.telemetry.Propagator()),
		interceptors.WithQuietProcedures(quietProcedures...),
	}, s.opts.chainOptions...)
	if s.cfg.TracePublicEndpoint {
		opts = append(opts, interceptors.WithPublicEndpoint())
	}
	if s.cfg.NativeHistograms {
		opts = append(opts, interceptors.WithNativeHistograms())
	}
	chain, err := interceptors.Default(s.logger, s.registry, opts...)
	if err != nil {
		return fmt.Errorf("kit: interceptors: %w", err)
	}
	if chain.Tracing == nil && s.cfg.TracePublicEndpoint {
		// As without the default chain: a Tracing of the application's
		// own, in WithInterceptors, would trust its callers.
		return errors.New(`kit: TracePublicEndpoint (KIT_TRACE_PUBLIC_ENDPOINT) "true": interceptors.WithoutTracing leaves kit's chain without tracing, which it configures; give interceptors.WithPublicEndpoint() to your own Tracing instead`)
	}
	if chain.Metrics == nil && s.cfg.NativeHistograms {
		return errors.New(`kit: NativeHistograms (KIT_METRICS_NATIVE_HISTOGRAMS) "true": interceptors.WithoutMetrics leaves kit's chain without metrics, which it configures; give interceptors.WithNativeHistograms() to your own Metrics instead`)
	}
	s.routes.echoIDs = chain.RequestID != nil
	if s.routes.echoIDs {
		s.routes.rejected = s.rejected
		s.unknown.rest.rejected = s.rejected
	}
	own := compose(headerFields{}, chain.Tracing, chain.RequestID, chain.Logging, chain.Metrics, rateLimit, inFlight,
		chain.Recovery, deadlines, limit, chain.ForwardHeaders, chain.Validation)
	s.serverChain = append([]connect.Interceptor{own}, s.opts.interceptors...)
	s.clientChain = withClientEnd(append([]connect.Interceptor{composed(chain.Client())}, s.opts.clientInterceptors...), retry, breaker)
	return nil
}

// withClientEnd returns chain with retry and breaker appended, innermost,
// those that are not nil, and then the judge of the outlier ejection
// ([outlierInterceptor]): the circuit breaker sits right in front of the
// network, so that it sees each attempt, and every other interceptor sees
// the calls it refuses as failed calls; retry sits in front of it, so that
// the interceptors of the chain see the call that the caller made once,
// with the outcome of its last attempt. The judge sits innermost, so that
// each attempt is judged on the address it reached, and a call the
// breaker refuses reaches none.
func withClientEnd(chain []connect.Interceptor, retry, breaker connect.Interceptor) []connect.Interceptor {
	end := compose(retry, breaker, outlierInterceptor{})
	// Composed with the chain's last when that is kit's own, as composed
	// says: connect's check before each interceptor it chains costs a
	// stream two allocations.
	if n := len(chain); n > 0 {
		if last, ok := chain[n-1].(composed); ok {
			chain[n-1] = append(slices.Clip(last), end...)
			return chain
		}
	}
	return append(chain, end)
}

// composed is kit's own interceptors as one, the first outermost, as
// connect.WithInterceptors would chain them. Written by hand because
// connect's chain checks, before each interceptor it holds, that no
// interceptor created a client context (connect.NewClientContext), which
// walks the call's context twice: for seven interceptors, 1.0–1.4 µs per
// call against 0.7–0.9 composed (BenchmarkComposed). kit's interceptors
// create none, so connect checks once for all of them, and still before
// each of the user's (WithInterceptors).
type composed []connect.Interceptor

// compose returns the interceptors that are not nil as one.
func compose(all ...connect.Interceptor) composed {
	var c composed
	for _, i := range all {
		if i != nil {
			c = append(c, i)
		}
	}
	return c
}

func (c composed) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	for _, i := range slices.Backward(c) {
		next = i.WrapUnary(next)
	}
	return next
}

func (c composed) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	for _, i := range slices.Backward(c) {
		next = i.WrapStreamingClient(next)
	}
	return next
}

func (c composed) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	for _, i := range slices.Backward(c) {
		next = i.WrapStreamingHandler(next)
	}
	return next
}
