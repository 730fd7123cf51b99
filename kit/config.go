package kit

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
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
	// Grpc-Status-Details-Bin), X-Request-Id, and with RateLimit the
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
	// and get as long again, from then. KIT_SHUTDOWN_TIMEOUT, default 15s.
	ShutdownTimeout time.Duration
	// DrainDelay is how long the server keeps serving after it reports
	// NOT_SERVING at shutdown, so load balancers stop sending it traffic
	// before it stops accepting. A shutdown that a failed background
	// component ([Server.Go]) causes skips it. KIT_DRAIN_DELAY, default 0
	// (set it to a few seconds behind a load balancer or in Kubernetes).
	DrainDelay time.Duration

	// CallTimeout is the deadline of unary calls whose caller set none;
	// [NoTimeout] (KIT_CALL_TIMEOUT=off) sets none. It also bounds the time
	// the request body of a unary or server-streaming call takes to arrive
	// when the caller set no deadline (MaxCallTimeout does when it is off;
	// the caller's deadline, capped at MaxCallTimeout, or at CallTimeout
	// when MaxCallTimeout is off, does when set):
	// connect reads that body before any deadline applies.
	// KIT_CALL_TIMEOUT, default 30s.
	CallTimeout time.Duration
	// MaxCallTimeout caps the deadline a unary call may ask for;
	// [NoTimeout] (off) caps nothing. KIT_MAX_CALL_TIMEOUT, default 5m.
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
	// NoFrameBatching turns off the batching of HTTP/2 connections' writes
	// and reads (see BENCHMARKS.md: with it, a gRPC call costs the server
	// about a third less CPU), and with it the wrapping of HTTP/1.x
	// connections: a call whose request body does not arrive within its
	// deadline is then answered over HTTP/1.1 with the socket's read
	// error, which names the server's and the client's addresses, rather
	// than "request body not received within the call's deadline".
	// KIT_FRAME_BATCHING=false, default on.
	NoFrameBatching bool

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

// AdminOff is the [Config.AdminAddr] that disables the admin listener.
const AdminOff = "off"

// NoTimeout turns a deadline off when it is the value of
// [Config.CallTimeout], [Config.MaxCallTimeout] or [Config.StreamTimeout]
// (any negative value does); in the environment, write "off".
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

// Validate reports every invalid setting of c (after defaults), each named by
// its field and environment variable with the offending value.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, env string, value any, why string) {
		errs = append(errs, fmt.Errorf("%s (%s) %q: %s", field, env, fmt.Sprint(value), why))
	}
	if err := checkAddr(c.Addr); err != nil {
		bad("Addr", "KIT_ADDR", c.Addr, err.Error())
	}
	if c.AdminAddr != AdminOff {
		if err := checkAddr(c.AdminAddr); err != nil {
			bad("AdminAddr", "KIT_ADMIN_ADDR", c.AdminAddr, err.Error())
		} else if c.AdminToken == "" && !c.AdminInsecure && !isLoopback(c.AdminAddr) {
			bad("AdminAddr", "KIT_ADMIN_ADDR", c.AdminAddr,
				"admin listener beyond loopback needs KIT_ADMIN_TOKEN (or KIT_ADMIN_INSECURE=true)")
		}
		if c.Addr == c.AdminAddr && !strings.HasSuffix(c.Addr, ":0") {
			bad("AdminAddr", "KIT_ADMIN_ADDR", c.AdminAddr, "same address as KIT_ADDR")
		}
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		bad("TLSCertFile", "KIT_TLS_CERT_FILE", c.TLSCertFile, "KIT_TLS_CERT_FILE and KIT_TLS_KEY_FILE must be set together")
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		bad("TLSKeyFile", "KIT_TLS_KEY_FILE", c.TLSKeyFile, "KIT_TLS_CERT_FILE and KIT_TLS_KEY_FILE must be set together")
	}
	for _, o := range c.CORSAllowedOrigins {
		if o != "*" && !isOrigin(o) {
			bad("CORSAllowedOrigins", "KIT_CORS_ALLOWED_ORIGINS", o,
				`want an origin such as "https://app.example.com" (scheme, host and port: no path, not even "/"; one "*" at most), or "*"`)
		}
	}
	if c.CORSAllowCredentials && slices.Contains(c.CORSAllowedOrigins, "*") {
		bad("CORSAllowCredentials", "KIT_CORS_ALLOW_CREDENTIALS", c.CORSAllowCredentials,
			`browsers refuse credentials with KIT_CORS_ALLOWED_ORIGINS="*": list the origins`)
	}
	if len(c.CORSAllowedOrigins) == 0 {
		// CORS is off: these would change nothing, and browsers' calls
		// would fail with nothing in the logs.
		if len(c.CORSAllowedHeaders) > 0 {
			bad("CORSAllowedHeaders", "KIT_CORS_ALLOWED_HEADERS", strings.Join(c.CORSAllowedHeaders, ","), "needs KIT_CORS_ALLOWED_ORIGINS (CORS is off without it)")
		}
		if len(c.CORSExposedHeaders) > 0 {
			bad("CORSExposedHeaders", "KIT_CORS_EXPOSED_HEADERS", strings.Join(c.CORSExposedHeaders, ","), "needs KIT_CORS_ALLOWED_ORIGINS (CORS is off without it)")
		}
		if c.CORSAllowCredentials {
			bad("CORSAllowCredentials", "KIT_CORS_ALLOW_CREDENTIALS", c.CORSAllowCredentials, "needs KIT_CORS_ALLOWED_ORIGINS (CORS is off without it)")
		}
	}
	if c.CORSAllowCredentials && slices.Contains(c.CORSExposedHeaders, "*") {
		bad("CORSExposedHeaders", "KIT_CORS_EXPOSED_HEADERS", "*",
			`with KIT_CORS_ALLOW_CREDENTIALS, browsers read "*" as a header named "*" and expose nothing more: list the headers`)
	}
	if c.CORSAllowCredentials {
		for _, o := range c.CORSAllowedOrigins {
			if o != "*" && isOrigin(o) && !pinsSite(o) {
				bad("CORSAllowedOrigins", "KIT_CORS_ALLOWED_ORIGINS", o,
					`with KIT_CORS_ALLOW_CREDENTIALS, a "*" may stand only for subdomains of a named domain ("https://*.example.com") or for a port ("http://localhost:*"): this one matches other sites too, which could then call with your users' cookies`)
			}
		}
	}
	for _, h := range []struct {
		field, env string
		names      []string
	}{
		{"CORSAllowedHeaders", "KIT_CORS_ALLOWED_HEADERS", c.CORSAllowedHeaders},
		{"CORSExposedHeaders", "KIT_CORS_EXPOSED_HEADERS", c.CORSExposedHeaders},
	} {
		for _, name := range h.names {
			switch {
			case name == "*":
			case strings.Contains(name, "*"):
				bad(h.field, h.env, name, `"*" stands alone, for every header; a name with "*" in it would match only itself`)
			case !isHeaderName(name):
				bad(h.field, h.env, name, `want a header name such as "X-Api-Key"`)
			}
		}
	}
	for _, d := range []struct {
		field, env string
		value      time.Duration
	}{
		{"ReadHeaderTimeout", "KIT_READ_HEADER_TIMEOUT", c.ReadHeaderTimeout},
		{"IdleTimeout", "KIT_IDLE_TIMEOUT", c.IdleTimeout},
		{"MaxConnectionAge", "KIT_MAX_CONNECTION_AGE", c.MaxConnectionAge},
		{"ShutdownTimeout", "KIT_SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
		{"DrainDelay", "KIT_DRAIN_DELAY", c.DrainDelay},
		{"HTTPClient.DialTimeout", "KIT_CLIENT_DIAL_TIMEOUT", c.HTTPClient.DialTimeout},
		{"HTTPClient.ResolveInterval", "KIT_CLIENT_RESOLVE_INTERVAL", c.HTTPClient.ResolveInterval},
		{"HTTPClient.IdleTimeout", "KIT_CLIENT_IDLE_TIMEOUT", c.HTTPClient.IdleTimeout},
	} {
		if d.value < 0 {
			bad(d.field, d.env, d.value, "must not be negative")
		}
	}
	if c.CallTimeout > 0 && c.MaxCallTimeout > 0 && c.CallTimeout > c.MaxCallTimeout {
		bad("CallTimeout", "KIT_CALL_TIMEOUT", c.CallTimeout, fmt.Sprintf("exceeds KIT_MAX_CALL_TIMEOUT (%s)", c.MaxCallTimeout))
	}
	for _, b := range []struct {
		field, env string
		value      int64
		lo, hi     int64
	}{
		{"MaxRequestBytes", "KIT_MAX_REQUEST_BYTES", c.MaxRequestBytes, 1, 1 << 30},
		{"MaxResponseBytes", "KIT_MAX_RESPONSE_BYTES", c.MaxResponseBytes, 1, 1 << 30},
		{"MaxHeaderBytes", "KIT_MAX_HEADER_BYTES", c.MaxHeaderBytes, 4 << 10, 16 << 20},
		{"MaxConcurrentStreams", "KIT_MAX_CONCURRENT_STREAMS", int64(c.MaxConcurrentStreams), 1, 1 << 20},
	} {
		if b.value < b.lo || b.value > b.hi {
			bad(b.field, b.env, b.value, fmt.Sprintf("must be between %d and %d (0 keeps the default)", b.lo, b.hi))
		}
	}
	c.validateOverload(bad)
	c.ClientBreaker.check(bad)
	c.ClientRetry.check(bad)
	c.HTTPClient.check(bad)
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		bad("LogFormat", "KIT_LOG_FORMAT", c.LogFormat, `want "auto", "json" or "text"`)
	}
	if len(errs) > 0 {
		return fmt.Errorf("kit: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, e.g. \":8080\" or \"127.0.0.1:9090\"")
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// isLoopback reports whether addr binds to loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isOrigin reports whether o has the shape of the Origin header a browser
// sends, scheme://host[:port], which CORS compares as a string: an origin
// copied from the address bar with its trailing "/" (or any path) would
// match no call, and browsers' calls would fail with nothing in the logs.
// The host may hold one "*" wildcard ("https://*.example.com"): rs/cors
// splits an origin at its first "*" and takes any other literally, so
// "https://*.*.example.com" would match no call.
func isOrigin(o string) bool {
	scheme, host, ok := strings.Cut(o, "://")
	return ok && scheme != "" && host != "" && !strings.ContainsAny(host, "/?#@ ") && strings.Count(o, "*") <= 1
}

// pinsSite reports whether o, an origin that passed isOrigin, matches one
// site's origins only: its wildcard, if any, stands for a port
// ("http://localhost:*") or for labels in front of a domain of two labels
// or more ("https://*.example.com", "https://pr-*.example.com"), as rs/cors
// matches it (prefix and suffix of the text). "https://*", "https://*.com"
// or "https://*example.com" (which matches "https://evilexample.com") would
// let other sites call with a user's credentials, which the origin "*" is
// refused for. A public suffix ("*.co.uk") cannot be told from a domain.
func pinsSite(o string) bool {
	_, host, _ := strings.Cut(o, "://")
	i := strings.IndexByte(host, '*')
	if i < 0 {
		return true // none, or in the scheme: the host is fixed
	}
	if strings.Contains(host[:i], ":") {
		return true // in the port
	}
	domain, _, _ := strings.Cut(host[i+1:], ":")
	_, rest, ok := strings.Cut(domain, ".")
	return ok && strings.Contains(rest, ".") && !strings.HasSuffix(rest, ".")
}

// isHeaderName reports whether name is an HTTP header name (an RFC 9110
// token), so that a typo such as "X-A;X-B" fails at start rather than
// leaving browsers' calls refused.
func isHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}

// ConfigFromEnv reads a [Config] from the KIT_* environment variables
// documented on its fields. An error names each variable whose value does
// not parse. Checks that span settings (an admin listener beyond loopback
// needs a token, say) wait for [New], so that flags added with
// [Config.RegisterFlags] can still override the environment.
func ConfigFromEnv() (Config, error) {
	return configFrom(os.LookupEnv)
}

func configFrom(lookup func(string) (string, bool)) (Config, error) {
	var c Config
	var errs []error
	for _, s := range settings {
		v, ok := lookup(s.env)
		if v = strings.TrimSpace(v); !ok || v == "" {
			continue
		}
		if err := s.set(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", s.env, v, err))
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("kit: invalid config: %w", errors.Join(errs...))
	}
	return c, nil
}
