package kit

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"github.com/bufbuild/httplb/resolver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/interceptors"
)

// An Option configures a [Server] with a code dependency; data settings live
// in [Config].
type Option interface {
	apply(*options)
}

type options struct {
	tls          *tls.Config
	registry     *prometheus.Registry
	logger       *slog.Logger
	level        *slog.LevelVar
	interceptors []connect.Interceptor
	// clientInterceptors extend the client chain (ClientOptions).
	clientInterceptors []connect.Interceptor
	chainOptions       []interceptors.Option
	limitOptions       []interceptors.LimitOption
	// noDefaultChain drops the default interceptors.
	noDefaultChain bool
	// auth authenticates the callers of mounted services (WithAuth); nil:
	// none.
	auth func(ctx context.Context, r *http.Request) (any, error)
	// resolver resolves the names HTTPClient calls; nil resolves them
	// with DNS. Tests set it (export_test.go).
	resolver resolver.Resolver
	// clientAddrs are the fixed lists of WithClientAddresses, by host;
	// clientAddrsErr the error of the last such option given bad input.
	clientAddrs    map[string][]resolver.Address
	clientAddrsErr error
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the server's logger. By default the server builds one with
// [NewLogger] from [Config.LogFormat], writing to stderr. Give the
// [slog.LevelVar] the logger's handler reads with [WithLogLevel], or the
// admin log-level endpoint cannot change it.
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = logger })
}

// WithLogLevel sets the level variable that the admin endpoint reads and
// changes at run time. By default the server makes its own, set from
// [Config.LogLevel].
func WithLogLevel(level *slog.LevelVar) Option {
	return optionFunc(func(o *options) { o.level = level })
}

// WithInterceptors appends interceptors to the server's chain, inside the
// default ones (closest to the handler). They see only valid requests, and
// what they do is traced, logged, counted and recovered from. Repeated
// options add up.
//
// They are part of [Server.HandlerOptions], so they also wrap kit's own gRPC
// health and reflection services, and the deliveries of pubsub subscribers
// built with those options. Health probes (Kubernetes' gRPC probe,
// grpc_health_probe) send no credentials, and a delivery's headers are the
// message's, not a caller's: an interceptor that checks a caller's
// credentials lets "/grpc.health.v1.Health/" procedures and deliveries
// (pubsub.MessageInfoFrom reports ok in their context) through, or goes on
// the generated handler constructors alone, with connect.WithInterceptors
// after srv.HandlerOptions(). They are not part of [Server.ClientOptions]:
// give those that also act on the client side to [WithClientInterceptors].
func WithInterceptors(ics ...connect.Interceptor) Option {
	return optionFunc(func(o *options) { o.interceptors = append(o.interceptors, ics...) })
}

// WithClientInterceptors appends interceptors to the client chain of
// [Server.ClientOptions], inside kit's own (tracing, request id, logging,
// metrics). They run on every call of the clients built with those
// options, and on every publish of the pubsub publishers built with them,
// whose message headers are the call's request headers. Repeated options
// add up.
//
// connect's interceptors serve both sides (connect.Spec.IsClient tells
// which), so one written for both can go to WithInterceptors and here: an
// auth interceptor that sets a token on the client side and checks it on
// the server side then stamps every publish, and checks every delivery,
// with no exception for pubsub.
func WithClientInterceptors(ics ...connect.Interceptor) Option {
	return optionFunc(func(o *options) { o.clientInterceptors = append(o.clientInterceptors, ics...) })
}

// WithInterceptorOptions configures the default interceptor chain
// ([interceptors.Default]). Opt out of a piece
// (interceptors.WithoutTracing()...), log payloads at debug
// (interceptors.WithPayloads()), set histogram buckets, or bring your own
// tracer provider (interceptors.WithTracerProvider).
func WithInterceptorOptions(opts ...interceptors.Option) Option {
	return optionFunc(func(o *options) { o.chainOptions = append(o.chainOptions, opts...) })
}

// WithoutDefaultInterceptors drops the default interceptor chain. Only the rate
// limit and the bound on calls in flight (when [Config.RateLimit] and
// [Config.MaxInFlight] turn them on), the server's deadlines and response
// limit, and the interceptors given with [WithInterceptors] remain, in that
// order. To reorder the default chain, build its pieces with
// [interceptors.Default] and pass them, in your order, to WithInterceptors,
// with the logger and registry you also give to [WithLogger] and
// [WithRegistry]. Such pieces trace with the tracer provider of
// [interceptors.WithTracerProvider] (OpenTelemetry's global one by default),
// not the one kit builds from the OTEL_* variables, and [Server.ClientOptions]
// then holds only the interceptors of [WithClientInterceptors] (and the retries
// of [Config.ClientRetry] and the circuit breaker of [Config.ClientBreaker],
// innermost, when they are on): give it chain.Client()... first.
func WithoutDefaultInterceptors() Option {
	return optionFunc(func(o *options) { o.noDefaultChain = true })
}

// WithRegistry sets the Prometheus registry the server's metrics go into and
// that the admin listener's /metrics serves. The Go runtime (go_*), build
// info (go_build_info) and process (process_*) collectors are added to it,
// each unless reg already serves its metrics: a collector of the program's
// own, with its options, is kept. By default the server makes its own
// registry: never the global default one.
func WithRegistry(reg *prometheus.Registry) Option {
	return optionFunc(func(o *options) { o.registry = reg })
}

// WithTLSConfig makes the main listener serve TLS with cfg (HTTP/2 is added
// to its ALPN protocols), for what files cannot say: certificates reloaded
// by GetCertificate, client certificates (mTLS). It takes precedence over
// [Config.TLSCertFile] and [Config.TLSKeyFile]. The configs that
// cfg.GetConfigForClient returns without NextProtos get "h2" and
// "http/1.1" too (net/http adds them to cfg only). [New] fails if cfg has
// no certificate: no Certificates, GetCertificate or GetConfigForClient.
func WithTLSConfig(cfg *tls.Config) Option {
	return optionFunc(func(o *options) { o.tls = cfg })
}
