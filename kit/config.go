package kit

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Config is the data half of a [Server]'s configuration: everything an
// operator sets from the environment. The zero value is valid: every zero
// field takes the default its comment states. [ConfigFromEnv] reads it from
// KIT_* environment variables; [Config.Validate] checks it.
type Config struct {
	// Addr is the main listener's address: gRPC, gRPC-Web and Connect over
	// HTTP/1.1 and cleartext HTTP/2 (or TLS). KIT_ADDR, default ":8080".
	Addr string
	// AdminAddr is the admin listener's address: /metrics, /debug/pprof,
	// /debug/loglevel, /healthz, /readyz. "off" disables it.
	// KIT_ADMIN_ADDR, default "127.0.0.1:9090".
	AdminAddr string
	// AdminToken, when set, is the bearer token the admin endpoints require
	// (probes excepted). An admin listener bound beyond loopback refuses to
	// start without one unless AdminInsecure is set. KIT_ADMIN_TOKEN,
	// default empty (no token).
	AdminToken string
	// AdminInsecure allows an admin listener bound beyond loopback without a
	// token. KIT_ADMIN_INSECURE, default false.
	AdminInsecure bool
	// Pprof serves /debug/pprof on the admin listener. KIT_PPROF, default false.
	Pprof bool

	// TLSCertFile and TLSKeyFile, when both set, make the main listener
	// serve TLS (HTTP/2 negotiated by ALPN, HTTP/1.1 as fallback) instead of
	// cleartext. [New] fails if they do not load or the certificate has
	// expired; once serving, a pair renewed on disk is served to the next
	// handshakes without a restart. KIT_TLS_CERT_FILE, KIT_TLS_KEY_FILE,
	// default empty (cleartext).
	TLSCertFile string
	TLSKeyFile  string

	// CORSAllowedOrigins lists the origins browsers may call from (gRPC-Web
	// and Connect); "*" allows any. Empty disables CORS.
	// KIT_CORS_ALLOWED_ORIGINS, comma-separated, default empty.
	CORSAllowedOrigins []string
	// CORSAllowedHeaders lists the request headers pages may send beyond
	// those every protocol needs (Content-Type, Connect-*, Grpc-Timeout,
	// X-Grpc-Web, X-User-Agent) and Authorization, X-Request-Id,
	// Traceparent, Tracestate and Baggage, which are always allowed: your
	// own metadata, such as "X-Api-Key". "*" allows any. A browser refuses
	// to send a call whose preflight does not allow each of its headers.
	// Refused without CORSAllowedOrigins (CORS is off), as are
	// CORSExposedHeaders and CORSAllowCredentials.
	// KIT_CORS_ALLOWED_HEADERS, comma-separated, default empty.
	CORSAllowedHeaders []string
	// CORSExposedHeaders lists the response headers pages may read beyond
	// the protocols' status headers (Grpc-Status, Grpc-Message,
	// Grpc-Status-Details-Bin), X-Request-Id, WWW-Authenticate (the
	// challenge of a call WithAuth refused), and with RateLimit the
	// Retry-After of its refusals, which are always exposed:
	// the headers your handlers set, and for the trailers of a Connect
	// unary call, their names prefixed with "Trailer-". A browser hides any
	// other header from the page. "*" exposes any, but not to calls with
	// credentials, for which browsers read it as a header named "*": it is
	// refused with CORSAllowCredentials. KIT_CORS_EXPOSED_HEADERS,
	// comma-separated, default empty.
	CORSExposedHeaders []string
	// CORSAllowCredentials lets pages call with credentials (cookies, TLS
	// client certificates: fetch's credentials "include", which a page
	// whose session is a cookie needs): a browser hides the response to
	// such a call unless the server allows them. Requires listed origins,
	// not "*", which browsers refuse with credentials, and a wildcard in
	// one of them may stand only for subdomains of a named domain
	// ("https://*.example.com") or a port, not for other sites
	// ("https://*", "https://*.com").
	// KIT_CORS_ALLOW_CREDENTIALS, default false.
	CORSAllowCredentials bool
	// TracePublicEndpoint takes the callers for untrusted, as a service
	// that browsers or the public internet call should: each call begins
	// a trace of its own, linked to the caller's span, and the caller's
	// baggage is dropped (see interceptors.WithPublicEndpoint).
	// KIT_TRACE_PUBLIC_ENDPOINT, default false: callers' trace context and
	// baggage are taken as they send them. New refuses it with
	// [WithoutDefaultInterceptors], whose chain kit does not build, and with
	// interceptors.WithoutTracing, which leaves the chain without tracing.
	TracePublicEndpoint bool
	// NativeHistograms makes the latency histograms
	// (grpc_server_handling_seconds, grpc_client_handling_seconds,
	// pubsub_handling_seconds) Prometheus native histograms as well as
	// classic ones (see interceptors.WithNativeHistograms).
	// KIT_METRICS_NATIVE_HISTOGRAMS, default false. New refuses it with
	// [WithoutDefaultInterceptors], whose chain kit does not build, and
	// with interceptors.WithoutMetrics, which leaves the chain without
	// metrics.
	NativeHistograms bool

	// ReadHeaderTimeout bounds the time to read a request's headers (and
	// an h2c connection's preface). KIT_READ_HEADER_TIMEOUT, default 5s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes connections with no request in flight for this
	// long. KIT_IDLE_TIMEOUT, default 2m.
	IdleTimeout time.Duration
	// MaxConnectionAge retires a connection once it is this old (each
	// connection's age drawn within ±10% of it, so that connections opened
	// together do not all go at once): the next call on it is served, and
	// then HTTP/2 connections get a GOAWAY and HTTP/1.1 ones close after the
	// response. Calls in flight finish on it, except that a client or bidi
	// stream a net/http client (connect-go) opens while the GOAWAY is on its
	// way fails with Unavailable: net/http's server sends one GOAWAY, not
	// grpc-go's two, and its client cannot resend a streamed body (grpc-go
	// clients resend such streams). The client sends its next
	// calls on a new connection, which a load balancer or a Kubernetes
	// Service may route to another instance, so instances added later get a
	// share of long-lived clients' calls. A connection that carries no new
	// call keeps its streams until they end. KIT_MAX_CONNECTION_AGE,
	// default 0 (connections are kept until the client or IdleTimeout
	// closes them).
	MaxConnectionAge time.Duration
	// ShutdownTimeout bounds how long in-flight calls and open streams get
	// to finish once shutdown begins; past it, their contexts are
	// cancelled and their clients get Unavailable (not for a handler's
	// own connect error of code Unknown), then their connections
	// are closed, all within one more second. Background
	// components ([Server.Go]) are stopped after the calls
	// and get as long again, from then. KIT_SHUTDOWN_TIMEOUT, default 15s,
	// at most 1h.
	ShutdownTimeout time.Duration
	// DrainDelay is how long the server keeps serving after it reports
	// NOT_SERVING at shutdown, so load balancers stop sending it traffic
	// before it stops accepting. A shutdown that a failed background
	// component ([Server.Go]) causes skips it. KIT_DRAIN_DELAY, default 0
	// (set it to a few seconds behind a load balancer or in Kubernetes),
	// at most 1h.
	DrainDelay time.Duration

	// CallTimeout is the deadline of unary calls whose caller set none;
	// [NoTimeout] (KIT_CALL_TIMEOUT=off, or 0 in the environment; a zero
	// field takes the default) sets none. It also bounds the time
	// the request body of a unary or server-streaming call takes to arrive
	// when the caller set no deadline (MaxCallTimeout does when it is off;
	// the caller's deadline, capped at MaxCallTimeout, or at CallTimeout
	// when MaxCallTimeout is off, does when set):
	// connect reads that body before any deadline applies.
	// KIT_CALL_TIMEOUT, default 30s.
	CallTimeout time.Duration
	// MaxCallTimeout caps the deadline a unary call may ask for;
	// [NoTimeout] (off, or 0 in the environment) caps nothing.
	// KIT_MAX_CALL_TIMEOUT, default 5m.
	MaxCallTimeout time.Duration
	// StreamTimeout is the deadline of streaming calls whose caller set
	// none; 0 leaves them unbounded (the usual choice for watch streams,
	// which end at shutdown). A stream's deadline, this one or the
	// caller's, also ends a handler's Receive that waits for a client
	// that sends nothing: it fails with DeadlineExceeded. KIT_STREAM_TIMEOUT,
	// default 0.
	StreamTimeout time.Duration

	// MaxRequestBytes caps the size of one request message, after
	// decompression: gzip stops inflating one byte past it, so a gzip bomb
	// costs what a message this size does, and an uncompressed Connect
	// unary body whose Content-Length exceeds it is refused unread. It
	// also caps a REST call's body as sent (see [Server.Mount]).
	// KIT_MAX_REQUEST_BYTES, default 4MiB.
	MaxRequestBytes int64
	// MaxResponseBytes caps the size of one response message, a REST
	// call's included. The transcoder of REST calls holds each message
	// whole, up to the larger of the two limits.
	// KIT_MAX_RESPONSE_BYTES, default 4MiB.
	MaxResponseBytes int64
	// MaxHeaderBytes caps the size of a request's headers: over it, a call
	// gets HTTP 431. Over HTTP/1.1, net/http reads 4 KiB past it (its
	// bufio slop, the request line included) before it refuses.
	// KIT_MAX_HEADER_BYTES, default 64KiB.
	MaxHeaderBytes int64
	// MaxConcurrentStreams caps the concurrent calls on one HTTP/2
	// connection. KIT_MAX_CONCURRENT_STREAMS, default 250.
	MaxConcurrentStreams int
	// RateLimit is the calls per second the server admits, on average, in
	// bursts of up to RateLimitBurst: a call over it fails at once with
	// ResourceExhausted (HTTP 429 for Connect clients), before its handler
	// runs. A stream counts once, at its start; the gRPC health service,
	// reflection and pubsub deliveries are never refused ([WithLimitOptions]
	// exempts more; see [interceptors.RateLimit]). One limit for the
	// instance, not shared with others. KIT_RATE_LIMIT, default 0 (off).
	// Validate refuses a negative, NaN or infinite one with an error naming
	// it, as it does a RateLimitBurst or MaxInFlight out of range: no value
	// of these fields, from the environment, flags or code, reaches the
	// panics of [interceptors.RateLimit] and [interceptors.MaxInFlight],
	// which are for programming mistakes.
	RateLimit float64
	// RateLimitBurst is how many calls RateLimit admits at once, after a
	// quiet spell. Needs RateLimit. KIT_RATE_LIMIT_BURST, default 0: one
	// second's worth of calls (RateLimit, rounded up).
	RateLimitBurst int
	// MaxInFlight bounds the unary calls the server runs at once: one more
	// fails at once with Unavailable, which gRPC clients with a retry
	// policy, and load balancers, take to another instance, rather than
	// waiting in a queue. Streams hold no place (a watch stream may idle
	// for hours), but one that starts while MaxInFlight calls run is
	// refused too; the same procedures as RateLimit's are exempt (see
	// [interceptors.MaxInFlight]). KIT_MAX_INFLIGHT, default 0 (off).
	MaxInFlight int
	// MaxInFlightBytes bounds the bytes of request messages the server
	// reads and holds at once, across all calls whose client sends one
	// message (unary calls, REST calls, server streams): each reserves its
	// message's size as sent (its Content-Length, or its envelope's
	// prefix; a Connect unary body of unknown length, MaxRequestBytes;
	// never more than MaxRequestBytes and its envelope's prefix) before
	// its body is read, until its handler returns. A call that
	// does not fit waits up to 5s, within its deadline, then fails with
	// ResourceExhausted (HTTP 429 for Connect and REST) and Retry-After: 1;
	// one larger than the whole bound fails at once. Client and bidi
	// streams are not counted. Set it to what the container's memory
	// allows for messages being decoded (each costs several times its
	// size, see README "Memory limits"). KIT_MAX_INFLIGHT_BYTES, default 0
	// (off).
	MaxInFlightBytes int64
	// NoFrameBatching turns off the batching of HTTP/2 connections' writes
	// and reads (see BENCHMARKS.md: with it, a gRPC call costs the server
	// about a third less CPU), and with it the wrapping of HTTP/1.x
	// connections: a call whose request body does not arrive within its
	// deadline is then answered over HTTP/1.1 with the socket's read
	// error, which names the server's and the client's addresses, rather
	// than "request body not received within the call's deadline".
	// KIT_FRAME_BATCHING=false, default on.
	NoFrameBatching bool
	// NoSystemdNotify stops [Server.Run] from telling systemd how the
	// server fares when NOTIFY_SOCKET is set (a unit of Type=notify):
	// READY=1 once it serves and is ready, WATCHDOG=1 while it is live
	// (when WatchdogSec= is set), STOPPING=1 and the stages of its
	// shutdown, with EXTEND_TIMEOUT_USEC for each. Without NOTIFY_SOCKET
	// nothing is sent either way. KIT_SYSTEMD_NOTIFY=false, default on.
	NoSystemdNotify bool

	// ClientBreaker configures the circuit breaker of the clients built with
	// [Server.ClientOptions]; off by default. KIT_CLIENT_BREAKER and
	// KIT_CLIENT_BREAKER_* (see [ClientBreakerConfig]).
	ClientBreaker ClientBreakerConfig
	// ClientRetry configures the retries of the clients built with
	// [Server.ClientOptions]; off by default. KIT_CLIENT_RETRY and
	// KIT_CLIENT_RETRY_* (see [ClientRetryConfig]).
	ClientRetry ClientRetryConfig
	// HTTPClient configures the HTTP client of [Server.HTTPClient].
	// KIT_CLIENT_DIAL_TIMEOUT, KIT_CLIENT_RESOLVE_INTERVAL,
	// KIT_CLIENT_IDLE_TIMEOUT and KIT_CLIENT_TLS_* (see
	// [HTTPClientConfig]).
	HTTPClient HTTPClientConfig

	// LogFormat is "auto" (colored text on a terminal, JSON otherwise),
	// "json" or "text". KIT_LOG_FORMAT, default "auto".
	LogFormat string
	// LogLevel is the initial log level: debug, info, warn or error; the
	// admin endpoint changes it at run time. KIT_LOG_LEVEL, default info.
	LogLevel slog.Level

	// unknownEnv holds the KIT_* variables ConfigFromEnv found that name no
	// setting (a misspelt one), which New logs at warn.
	unknownEnv []string
}

// Defaults of [Config].
const (
	DefaultAddr                 = ":8080"
	DefaultAdminAddr            = "127.0.0.1:9090"
	DefaultReadHeaderTimeout    = 5 * time.Second
	DefaultIdleTimeout          = 2 * time.Minute
	DefaultShutdownTimeout      = 15 * time.Second
	DefaultCallTimeout          = 30 * time.Second
	DefaultMaxCallTimeout       = 5 * time.Minute
	DefaultMaxMessageBytes      = 4 << 20
	DefaultMaxHeaderBytes       = 64 << 10
	DefaultMaxConcurrentStreams = 250
)

// Bounds of Config.ShutdownTimeout and Config.DrainDelay, which a
// shutdown waits out in full (the drain delay, then each call and each
// background component up to the shutdown timeout): past them a shutdown
// would outlast any orchestrator's grace period (AWS ALB's longest
// deregistration delay is an hour), and the sum could overflow a
// time.Duration.
const (
	maxShutdownTimeout = time.Hour
	maxDrainDelay      = time.Hour
)

// AdminOff is the [Config.AdminAddr] that disables the admin listener.
const AdminOff = "off"

// NoTimeout turns a deadline off when it is the value of
// [Config.CallTimeout], [Config.MaxCallTimeout] or [Config.StreamTimeout]
// (any negative value does); in the environment and flags, write "off"
// or 0.
const NoTimeout time.Duration = -1

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	setDefault(&c.Addr, DefaultAddr)
	setDefault(&c.AdminAddr, DefaultAdminAddr)
	setDefault(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&c.CallTimeout, DefaultCallTimeout)
	setDefault(&c.MaxCallTimeout, DefaultMaxCallTimeout)
	setDefault(&c.MaxRequestBytes, DefaultMaxMessageBytes)
	setDefault(&c.MaxResponseBytes, DefaultMaxMessageBytes)
	setDefault(&c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&c.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	setDefault(&c.LogFormat, "auto")
	return c
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// ConfigFromEnv reads a [Config] from the KIT_* environment variables
// documented on its fields. An error names each variable whose value does
// not parse. Checks that span settings (an admin listener beyond loopback
// needs a token, say) wait for [New], so that flags added with
// [Config.RegisterFlags] can still override the environment. A KIT_*
// variable that names no setting (KIT_MAX_INFLIGT) is no error, so that a
// binary rolled back past a setting still starts, but [New] logs it at
// warn, with the variable it most likely meant.
func ConfigFromEnv() (Config, error) {
	c, err := configFrom(os.LookupEnv)
	if err == nil {
		c.unknownEnv = unknownEnv(os.Environ())
	}
	return c, err
}

func configFrom(lookup func(string) (string, bool)) (Config, error) {
	var c Config
	var errs []error
	for _, s := range settings {
		v, ok := lookup(s.env)
		if v = strings.TrimSpace(v); !ok || v == "" {
			continue
		}
		if err := s.parse(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", s.env, v, err))
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("kit: invalid config: %w", errors.Join(errs...))
	}
	return c, nil
}
