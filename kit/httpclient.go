package kit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/bufbuild/httplb"
	"github.com/bufbuild/httplb/conn"
	"github.com/bufbuild/httplb/health"
	"github.com/bufbuild/httplb/resolver"

	"github.com/connectkit/connectkit/interceptors"
)

// HTTPClientConfig configures the HTTP client of [Server.HTTPClient]. Every
// zero field takes the default its comment states.
type HTTPClientConfig struct {
	// DialTimeout bounds the time to open a connection to one address,
	// and then its TLS handshake. KIT_CLIENT_DIAL_TIMEOUT, default 5s.
	DialTimeout time.Duration
	// ResolveInterval is how often the client resolves each name it calls
	// again, so that the addresses a name gains (new Pods of a headless
	// Service) get calls and those it loses have their connections closed.
	// KIT_CLIENT_RESOLVE_INTERVAL, default 30s.
	ResolveInterval time.Duration
	// IdleTimeout closes a connection that carried no call for this long.
	// Keep it below the idle timeout of the servers called (a kit
	// server's KIT_IDLE_TIMEOUT is 2m). KIT_CLIENT_IDLE_TIMEOUT, default
	// 90s.
	IdleTimeout time.Duration
	// TLSCAFile is a PEM file of the certificate authorities that https://
	// servers' certificates must chain to, in place of the system's (a
	// private CA, a mesh's). KIT_CLIENT_TLS_CA_FILE, default none: the
	// system's roots. Read once, by [New].
	TLSCAFile string
	// TLSCertFile and TLSKeyFile, set together, are the certificate and key
	// the client shows to https:// servers that ask for one (mutual TLS).
	// They are loaded by [New], and loaded again at a handshake after
	// either file changed (a renewal), as the server's are.
	// KIT_CLIENT_TLS_CERT_FILE and KIT_CLIENT_TLS_KEY_FILE, default none.
	TLSCertFile, TLSKeyFile string

	// OutlierFailures is the number of calls in a row that must fail on
	// one address of a name for the client to leave the address out of
	// the balancing for a while (passive outlier ejection, as Envoy's
	// consecutive gateway errors): a failure is a call of a client built
	// with [Server.ClientOptions] that ends in Unavailable or
	// DeadlineExceeded (HTTP 502, 503 and 504 and the connection lost
	// under the call among them), while the caller still waits for it; any
	// other outcome clears the count. A call of another client is judged
	// by what HTTP shows only: HTTP 502, 503 or 504, UNAVAILABLE or
	// DEADLINE_EXCEEDED in the headers of a trailers-only gRPC or gRPC-Web
	// answer or in a gRPC answer's trailers, the connection lost. 0 takes the default; [OutlierOff] turns
	// ejection off.
	// KIT_CLIENT_OUTLIER_FAILURES, default 5 ("0" or "off": off).
	OutlierFailures int
	// OutlierEjectionTime is how long an address is left out at its first
	// ejection; each ejection leaves it out that much longer than the
	// last, up to 10 times as long, and each OutlierEjectionTime it then
	// stays back takes one step off. KIT_CLIENT_OUTLIER_EJECTION_TIME,
	// default 30s.
	OutlierEjectionTime time.Duration
	// OutlierMaxEjectedPercent bounds the addresses of one name left out
	// at once for failing calls: this percent of them, rounded down, and
	// at least one; and never the last of them that takes connections.
	// KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT, default 50 (one of 2 or 3,
	// two of 4).
	OutlierMaxEjectedPercent int
}

// Defaults of [HTTPClientConfig].
const (
	DefaultClientDialTimeout     = 5 * time.Second
	DefaultClientResolveInterval = 30 * time.Second
	DefaultClientIdleTimeout     = 90 * time.Second
)

// httpClientSettings are the KIT_CLIENT_* variables of [HTTPClientConfig].
var httpClientSettings = []setting{
	breakerDuration("KIT_CLIENT_DIAL_TIMEOUT", "time to connect to one address of a service called, and for its TLS handshake",
		DefaultClientDialTimeout, func(c *Config) *time.Duration { return &c.HTTPClient.DialTimeout }),
	breakerDuration("KIT_CLIENT_RESOLVE_INTERVAL", "resolve the names of the services called again this often",
		DefaultClientResolveInterval, func(c *Config) *time.Duration { return &c.HTTPClient.ResolveInterval }),
	breakerDuration("KIT_CLIENT_IDLE_TIMEOUT", "close client connections idle this long",
		DefaultClientIdleTimeout, func(c *Config) *time.Duration { return &c.HTTPClient.IdleTimeout }),
	text("KIT_CLIENT_TLS_CA_FILE", "PEM file of the authorities https:// servers called must chain to (default: the system's)",
		func(c *Config) *string { return &c.HTTPClient.TLSCAFile }),
	text("KIT_CLIENT_TLS_CERT_FILE", "client certificate shown to https:// servers (mutual TLS)",
		func(c *Config) *string { return &c.HTTPClient.TLSCertFile }),
	text("KIT_CLIENT_TLS_KEY_FILE", "key of KIT_CLIENT_TLS_CERT_FILE",
		func(c *Config) *string { return &c.HTTPClient.TLSKeyFile }),
}

func (h HTTPClientConfig) withDefaults() HTTPClientConfig {
	setDefault(&h.DialTimeout, DefaultClientDialTimeout)
	setDefault(&h.ResolveInterval, DefaultClientResolveInterval)
	setDefault(&h.IdleTimeout, DefaultClientIdleTimeout)
	setDefault(&h.OutlierFailures, DefaultClientOutlierFailures)
	setDefault(&h.OutlierEjectionTime, DefaultClientOutlierEjectionTime)
	setDefault(&h.OutlierMaxEjectedPercent, DefaultClientOutlierMaxEjectedPercent)
	return h
}

// check reports, with bad, a client certificate without its key or a key
// without its certificate (the durations are checked with Config's).
func (h HTTPClientConfig) check(bad func(field, env string, value any, why string)) {
	switch {
	case h.TLSCertFile != "" && h.TLSKeyFile == "":
		bad("HTTPClient.TLSCertFile", "KIT_CLIENT_TLS_CERT_FILE", h.TLSCertFile, "KIT_CLIENT_TLS_CERT_FILE and KIT_CLIENT_TLS_KEY_FILE must be set together")
	case h.TLSCertFile == "" && h.TLSKeyFile != "":
		bad("HTTPClient.TLSKeyFile", "KIT_CLIENT_TLS_KEY_FILE", h.TLSKeyFile, "KIT_CLIENT_TLS_CERT_FILE and KIT_CLIENT_TLS_KEY_FILE must be set together")
	}
	h.checkOutlier(bad)
}

// clientTLS returns the TLS config of the client's https:// connections, or
// nil for the defaults (the system's roots, no client certificate).
func (h HTTPClientConfig) clientTLS(logger *slog.Logger) (*tls.Config, error) {
	if h.TLSCAFile == "" && h.TLSCertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if h.TLSCAFile != "" {
		pem, err := os.ReadFile(h.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("kit: KIT_CLIENT_TLS_CA_FILE=%q: %w", h.TLSCAFile, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kit: KIT_CLIENT_TLS_CA_FILE=%q: no PEM certificate in it", h.TLSCAFile)
		}
	}
	if h.TLSCertFile != "" {
		files, err := newKeyPairFiles("KIT_CLIENT_TLS_CERT_FILE", h.TLSCertFile, "KIT_CLIENT_TLS_KEY_FILE", h.TLSKeyFile, logger)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return files.getCertificate(nil)
		}
	}
	return cfg, nil
}

// Pings of the client's HTTP/2 connections: one is sent on a connection
// silent for clientPingAfter, and the connection is closed, failing its
// calls, when no answer comes within clientPingTimeout. A Pod that went away
// without closing its connections (its node lost) then costs its calls
// under a minute instead of the kernel's TCP timeouts (15 minutes).
const (
	clientPingAfter   = 30 * time.Second
	clientPingTimeout = 15 * time.Second
)

// clientRedials is how many times the client sends a call again, each time
// to the next address, when the connection for it could not be opened: the
// call never left, so sending it elsewhere repeats nothing.
const clientRedials = 3

// HTTPClient returns the HTTP client of the service for its calls to other
// services: give it to generated clients with [Server.ClientOptions].
//
//	users := userv1connect.NewUserServiceClient(srv.HTTPClient(), "http://users:8080", srv.ClientOptions()...)
//
// It speaks HTTP/2 to every server: in cleartext (h2c) for http:// URLs, so
// that gRPC works without TLS, and over TLS for https:// ones. It resolves
// each name it calls to all of its addresses, opens one connection to each,
// and sends the calls to them in turn (round robin): a Kubernetes headless
// Service's name spreads the calls over all of its Pods. It resolves the
// names again every [HTTPClientConfig.ResolveInterval], and sooner when
// most addresses fail; the connections to addresses gone are closed once
// their calls have finished. An address whose connection cannot be opened
// is left out until a new connection to it succeeds, and a call that could
// not be sent for that is sent to the next address. A call that fails with
// nothing of it sent (its name not resolved, no address taking its
// connection, none healthy) is [interceptors.ErrNotSent] to errors.Is,
// beside the error of what failed; one that net/http wrote, then sent
// again on a new connection (a GET on a kept-alive HTTP/1.1 connection the
// server closed), is [interceptors.ErrConnectionLost] when that one cannot
// be opened. An address that fails
// [HTTPClientConfig.OutlierFailures] calls in a row (Unavailable,
// DeadlineExceeded, gateway errors, its connection lost) is left out for
// [HTTPClientConfig.OutlierEjectionTime], longer at each ejection, within
// the limit of [HTTPClientConfig.OutlierMaxEjectedPercent]: the calls of
// clients built with [Server.ClientOptions] are judged by their outcome in
// connect, any other by what HTTP shows (HTTP 502, 503 and 504, a gRPC
// status in the headers or trailers, the connection lost). It follows no
// redirects and uses no proxy.
//
// The client is made at the first call of HTTPClient and shared by every
// later one. [Server.Run] closes it at shutdown, after the background
// components have stopped, once the calls in flight on it have finished
// (within what remains of the components' [Config.ShutdownTimeout], and at
// least a second); calls made after that fail. A server that never runs
// closes it in [Server.Close]; without that, its goroutines (a few for each
// name called) stay.
func (s *Server) HTTPClient() *http.Client {
	s.httpClientMu.Lock()
	defer s.httpClientMu.Unlock()
	if s.httpClient == nil {
		s.httpClient = newBalancedClient(s.cfg.HTTPClient.withDefaults(), s.clientTLS, s.opts.resolver, nil, s.logger, s.outlierMetrics)
		if s.httpClientClosed { // after the shutdown: one that fails every call
			_ = s.httpClient.close(context.Background())
		}
	}
	return s.httpClient.http
}

// balancedClient is an httplb client whose transport sends a call again,
// to the next address, when its connection could not be opened.
type balancedClient struct {
	http   *http.Client
	lb     *httplb.Client
	health *dialHealth

	closeOnce sync.Once
	closed    chan struct{} // closed once close's work is done
}

// newBalancedClient returns a client that speaks TLS with tlsConfig (the
// defaults when nil), resolves names with res (DNS when nil), opens
// connections with dial (a net.Dialer's when nil), and reports its
// ejections to logger (none when nil) and metrics.
func newBalancedClient(cfg HTTPClientConfig, tlsConfig *tls.Config, res resolver.Resolver, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	logger *slog.Logger, metrics outlierMetrics) *balancedClient {
	if res == nil {
		res = resolver.NewDNSResolver(net.DefaultResolver, resolver.PreferIPv4, cfg.ResolveInterval)
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := newDialHealth(cfg.DialTimeout, outlierConfig{failures: max(cfg.OutlierFailures, 0), base: cfg.OutlierEjectionTime,
		maxPercent: cfg.OutlierMaxEjectedPercent, logger: logger, metrics: metrics})
	lb := httplb.NewClient(
		httplb.WithTransport("http", h2cTransport{h}),
		httplb.WithTransport("https", tlsTransport{h}),
		httplb.WithResolver(res),
		httplb.WithHealthChecks(h),
		httplb.WithDialer(h.dial(dial)),
		httplb.WithNoProxy(),
		httplb.WithTLSConfig(tlsConfig, cfg.DialTimeout),
		httplb.WithIdleConnectionTimeout(cfg.IdleTimeout),
	)
	return &balancedClient{
		http:   &http.Client{Transport: redial{lb.Transport}, CheckRedirect: lb.CheckRedirect},
		lb:     lb,
		health: h,
		closed: make(chan struct{}),
	}
}

// close closes the client once the calls in flight on it have finished, or
// returns ctx's error when ctx is done first (the client then closes when
// they finish, and a later close waits for that again).
func (c *balancedClient) close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		go func() {
			defer close(c.closed)
			_ = c.lb.Close()
			c.health.stopEjections()
			c.health.close()
		}()
	})
	select {
	case <-c.closed:
		return nil
	case <-ctx.Done():
		select {
		case <-c.closed: // as ctx ended
			return nil
		default:
			return ctx.Err()
		}
	}
}

// h2cTransport makes the round trippers of http:// addresses: HTTP/2 with
// prior knowledge, without TLS.
type h2cTransport struct{ h *dialHealth }

func (t h2cTransport) NewRoundTripper(_, addr string, cfg httplb.TransportConfig) httplb.RoundTripperResult {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return t.h.leaf(addr, newLeafTransport(cfg, &protocols))
}

// tlsTransport makes the round trippers of https:// addresses: HTTP/2 over
// TLS, or HTTP/1.1 with servers that offer no HTTP/2.
type tlsTransport struct{ h *dialHealth }

func (t tlsTransport) NewRoundTripper(_, addr string, cfg httplb.TransportConfig) httplb.RoundTripperResult {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	return t.h.leaf(addr, newLeafTransport(cfg, &protocols))
}

// leaf returns the round tripper of addr, by t: its calls' answers are
// judged for addr's ejection, and their bodies' read errors go through
// peerGone.
func (h *dialHealth) leaf(addr string, t *http.Transport) httplb.RoundTripperResult {
	a := h.addrOf(addr)
	return httplb.RoundTripperResult{
		RoundTripper: &outlierTransport{next: t, h: h, addr: a},
		Close: func() {
			t.CloseIdleConnections()
			h.release(a)
		},
	}
}

// newLeafTransport returns the transport of one address: one connection,
// pinged when silent.
func newLeafTransport(cfg httplb.TransportConfig, protocols *http.Protocols) *http.Transport {
	return &http.Transport{
		DialContext:            cfg.DialFunc,
		Protocols:              protocols,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        cfg.IdleConnTimeout,
		TLSHandshakeTimeout:    cfg.TLSHandshakeTimeout,
		TLSClientConfig:        cfg.TLSClientConfig,
		MaxResponseHeaderBytes: cfg.MaxResponseHeaderBytes,
		ExpectContinueTimeout:  time.Second,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: clientPingAfter,
			PingTimeout:     clientPingTimeout,
		},
	}
}

// redial sends a call again, up to clientRedials times, when the
// connection for it could not be opened, if its body can be sent again:
// the balancer picks the next address each time. A call whose connection
// the server reset (a killed process) fails with Unavailable (see
// peerGone; the addresses' round trippers, outlierTransport, wrap the
// bodies).
type redial struct{ next http.RoundTripper }

func (r redial) RoundTrip(req *http.Request) (*http.Response, error) {
	var written *atomic.Bool
	if replayable(req) {
		req, written = traceWrites(req)
	}
	resp, err := r.send(req)
	if err != nil {
		switch {
		case written != nil && written.Load() && req.Context().Err() == nil:
			// net/http wrote it on a connection that then failed, and
			// sent it again (see replayable): this attempt's failure
			// does not say that the first was not handled.
			return resp, lost(err)
		case err.Error() == httplbNoHealthy:
			return resp, noHealthy(req.URL.Host)
		case err.Error() == httplbNoAddresses:
			return resp, notSentError{fmt.Errorf("no addresses for %s: its name resolved to none (%w)", req.URL.Host, err)}
		case isDialError(err) || isResolveError(err):
			return resp, notSentError{err}
		}
		return resp, peerGone(req.Context(), err)
	}
	return resp, nil
}

// replayable reports whether net/http may send req again on a new
// connection after it wrote it on one that failed before an answer came
// (http.Request's isReplayable: a GET, HEAD, OPTIONS or TRACE, or a
// request with an Idempotency-Key, whose body can be sent again). A kept-
// alive HTTP/1.1 connection that the server closed after reading such a
// request, the server gone, makes that attempt fail to dial: the error
// of a request that its server may have handled.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// traceWrites returns req with a trace that sets written once net/http has
// written it, or tried to (httptrace's WroteRequest, with or without an
// error), on any connection.
func traceWrites(req *http.Request) (*http.Request, *atomic.Bool) {
	w := new(writeTrace) // one allocation for both
	w.trace.WroteRequest = func(httptrace.WroteRequestInfo) { w.written.Store(true) }
	return req.WithContext(httptrace.WithClientTrace(req.Context(), &w.trace)), &w.written
}

// writeTrace is [traceWrites]'s trace and what it sets.
type writeTrace struct {
	trace   httptrace.ClientTrace
	written atomic.Bool
}

// httplbNoHealthy is the text of httplb's error (unexported) for a call
// that no address of its name can take: every one refused its last
// connection, and none has connected again since.
const httplbNoHealthy = "unavailable: no healthy connections"

// httplbNoAddresses is the text of httplb's error (unexported) for a call
// to a name whose last resolution gave no address. httplb 0.4.0 replaces
// it at once by httplbNoHealthy's (balancer.go's newPickerLocked sets one
// error picker, then the other), so that a call sees it only in between.
const httplbNoAddresses = "resolver returned no addresses"

// isResolveError reports whether err is the error of a name that did not
// resolve (the balancer's picker returns the resolver's error, a
// *net.DNSError for DNS, without a dial around it).
func isResolveError(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// notSentError is the error of a call of which nothing left the client,
// err: no connection could be opened for it, or its name resolved to no
// address. Its text is err's, and it is also [interceptors.ErrNotSent] to
// errors.Is, as noHealthy's error is.
type notSentError struct{ err error }

func (e notSentError) Error() string   { return e.err.Error() }
func (e notSentError) Unwrap() []error { return []error{e.err, interceptors.ErrNotSent} }

// noHealthy is the error of a call refused so: connect-go made of
// httplb's "unavailable: unavailable: no healthy connections", which named
// no service; a service that calls several could not tell which one was
// down. Nothing of the call left the client, so its cause is also
// [interceptors.ErrNotSent], which Retry retries as it does a dial that
// failed.
func noHealthy(host string) error {
	return connect.NewError(connect.CodeUnavailable, noHealthyError{host})
}

// noHealthyError is [noHealthy]'s cause: its text names the host, and it
// is [interceptors.ErrNotSent] to errors.Is.
type noHealthyError struct{ host string }

func (e noHealthyError) Error() string {
	return "no healthy connections to " + e.host + ": every address refused its last connection, and a probe dials each again every second"
}

func (noHealthyError) Unwrap() error { return interceptors.ErrNotSent }

// peerGone returns err as the error of lost when it says that the call's
// connection closed under it (see connLost) while the call's context is
// live. connect-go reads a reset or a broken pipe as a peer that went
// away, which on a server is its client, and gives its callers Canceled,
// which says the caller gave up: Retry would not retry an idempotent call.
// It calls a stream cut inside a message a protocol error (Internal).
// gRPC's clients say Unavailable.
func peerGone(ctx context.Context, err error) error {
	if ctx.Err() == nil && connLost(err) {
		return lost(err)
	}
	return err
}

// lost returns the Unavailable error of a call whose connection closed
// under it: its causes are [interceptors.ErrConnectionLost], so that a
// breaker does not count it, and err.
func lost(err error) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w: %w", interceptors.ErrConnectionLost, err))
}

// resetBody is the body of a response whose read errors go through
// peerGone: a stream's server can be killed after its headers came. When
// judge is set (a call that outlierInterceptor does not judge, whose
// headers showed no failure), the body gives the call's verdict on
// judge's address, once: a failure when its connection is lost under a
// read, else a success at its end (io.EOF, or Close before it), or for
// a gRPC answer what its trailers say at its end.
type resetBody struct {
	io.ReadCloser
	ctx   context.Context
	judge atomic.Pointer[outlierTransport] // nil: not judged here, or judged
	// trailer, of a gRPC answer whose status is in its trailers, is
	// judged once the body ends (net/http fills it then).
	trailer *http.Header
}

func (b *resetBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF { // Read returns io.EOF itself, unwrapped
		if b.judge.Load() != nil {
			b.verdict(b.trailer != nil && grpcFailed(first(*b.trailer, "Grpc-Status")))
		}
	} else if err != nil {
		err = peerGone(b.ctx, err)
		if b.judge.Load() != nil && b.ctx.Err() == nil && connect.CodeOf(err) == connect.CodeUnavailable {
			b.verdict(true)
		}
	}
	return n, err
}

// Close closes the body, and judges a call whose answer was not read to
// its end a success (the address answered), unless the verdict is in
// trailers that did not come.
func (b *resetBody) Close() error {
	if b.trailer == nil && b.judge.Load() != nil {
		b.verdict(false)
	}
	return b.ReadCloser.Close()
}

// verdict counts the call's verdict on the address of judge, if no
// other did; a failure once the caller gave up counts for nothing.
func (b *resetBody) verdict(failed bool) {
	if t := b.judge.Swap(nil); t != nil && (!failed || b.ctx.Err() == nil) {
		t.h.result(t.addr, failed)
	}
}

// connLost reports whether err says that a call's connection closed under
// it: reset by the server, broken under a write, closed before the
// response ended (HTTP/2 reads so a connection's end, HTTP/1.1 a body cut
// short), closed by net/http after a write on it failed (a reset that
// another stream's write saw first), or closed for a ping left unanswered.
func connLost(err error) bool {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	for ; err != nil; err = errors.Unwrap(err) {
		switch err.Error() { // net/http's HTTP/2 errors are not exported
		case "http2: client connection force closed via ClientConn.Close", "http2: client connection lost":
			return true
		}
	}
	return false
}

// send makes the call, and makes it again while its connection could not
// be opened.
func (r redial) send(req *http.Request) (*http.Response, error) {
	for tries := 0; ; tries++ {
		resp, err := r.next.RoundTrip(req)
		if err == nil || tries == clientRedials || !isDialError(err) || req.Context().Err() != nil {
			return resp, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return resp, err
			}
			body, bodyErr := req.GetBody()
			if bodyErr != nil {
				return resp, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// isDialError reports whether err says that a connection could not be
// opened, so that nothing of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// dialHealth is the balancer's health checker: an address is healthy until
// a connection to it fails to open, or it fails calls in a row (see
// outlierTransport); then it is left out of the balancing, in the first
// case while a probe dials it, every second, until a dial succeeds, in the
// second for its ejection's time (see eject).
type dialHealth struct {
	timeout time.Duration
	outlier outlierConfig

	mu     sync.Mutex
	tasks  map[string]map[*dialCheck]struct{} // by address
	addrs  map[string]*outlierAddr            // by address, while ejection is on
	closed bool                               // no more ejections
	wg     sync.WaitGroup                     // the probes running, and the ejections' ends
}

// newDialHealth returns the health checker whose probes dial with timeout,
// and which ejects addresses as outlier says.
func newDialHealth(timeout time.Duration, outlier outlierConfig) *dialHealth {
	return &dialHealth{timeout: timeout, outlier: outlier, tasks: map[string]map[*dialCheck]struct{}{}, addrs: map[string]*outlierAddr{}}
}

// dialCheck is the health check of one connection of the balancer.
type dialCheck struct {
	ctx     context.Context
	cancel  context.CancelFunc
	conn    conn.Conn
	tracker health.Tracker
	probing bool // guarded by dialHealth.mu
	ejected bool // guarded by dialHealth.mu

	// marking orders mark's marks: each call's, and its looks at
	// probing and ejected, are made under it, so that the last agrees
	// with them.
	marking sync.Mutex
}

// New starts the check of c: healthy, until a dial to its address fails.
func (h *dialHealth) New(ctx context.Context, c conn.Conn, tracker health.Tracker) io.Closer {
	ctx, cancel := context.WithCancel(ctx)
	check := &dialCheck{ctx: ctx, cancel: cancel, conn: c, tracker: tracker}
	addr := c.Address().HostPort
	h.mu.Lock()
	if h.tasks[addr] == nil {
		h.tasks[addr] = map[*dialCheck]struct{}{}
	}
	h.tasks[addr][check] = struct{}{}
	h.mu.Unlock()
	// In a goroutine: the balancer calls New holding its lock, which
	// UpdateHealthState takes. A dial may fail meanwhile and mark the
	// connection unhealthy first: see mark.
	h.wg.Go(func() { h.mark(check) })
	return closerFunc(func() error {
		cancel()
		h.mu.Lock()
		delete(h.tasks[addr], check)
		if len(h.tasks[addr]) == 0 {
			delete(h.tasks, addr)
		}
		h.mu.Unlock()
		return nil
	})
}

// dial wraps the client's dial function: a failed dial marks its address
// unhealthy and starts probing it.
func (h *dialHealth) dial(next func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.failed(network, addr)
		}
		return c, err
	}
}

// failed marks every connection to addr unhealthy and probes addr until it
// takes a connection again.
func (h *dialHealth) failed(network, addr string) {
	var marked []*dialCheck
	h.mu.Lock()
	for check := range h.tasks[addr] {
		if !check.probing {
			check.probing = true
			marked = append(marked, check)
		}
	}
	h.mu.Unlock()
	// Outside h.mu: the balancer calls New holding its own lock, which
	// UpdateHealthState takes.
	for _, check := range marked {
		check.tracker.UpdateHealthState(check.conn, health.StateUnhealthy)
		h.wg.Go(func() { h.probe(check, network, addr) })
	}
}

// probe dials addr every second until a dial succeeds, then marks check's
// connection healthy again.
func (h *dialHealth) probe(check *dialCheck, network, addr string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	dialer := net.Dialer{Timeout: h.timeout}
	for {
		select {
		case <-check.ctx.Done():
			return
		case <-tick.C:
		}
		c, err := dialer.DialContext(check.ctx, network, addr)
		if err != nil {
			continue
		}
		_ = c.Close()
		h.mu.Lock()
		check.probing = false
		h.mu.Unlock()
		h.mark(check)
		return
	}
}

// mark marks check's connection healthy, or unhealthy while a probe dials
// its address or it is ejected, and again while that changed meanwhile
// (the mark is made outside h.mu, so a failed dial can come between,
// which failed no longer marks while its new probe runs). Its marks are
// made under check.marking: a late "unhealthy" of New's mark, made after
// the probe that the failure started had marked the connection healthy
// again, would leave it out with no probe running. The balancer's lock,
// which UpdateHealthState takes, is never held while check.marking is
// awaited.
func (h *dialHealth) mark(check *dialCheck) {
	check.marking.Lock()
	defer check.marking.Unlock()
	out := h.isOut(check)
	for {
		state := health.StateHealthy
		if out {
			state = health.StateUnhealthy
		}
		check.tracker.UpdateHealthState(check.conn, state)
		now := h.isOut(check)
		if now == out {
			return
		}
		out = now
	}
}

// isOut reports whether check's connection is out of the balancing: its
// address is probed, or ejected.
func (h *dialHealth) isOut(check *dialCheck) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return check.probing || check.ejected
}

// close waits for the probes, which the balancer's closing cancelled, and
// the ejections' ends (stopEjections stops those that had not begun).
func (h *dialHealth) close() { h.wg.Wait() }

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// closeHTTPClient closes the client of [Server.HTTPClient], if one was made
// (made reports whether).
func (s *Server) closeHTTPClient(ctx context.Context) (made bool, err error) {
	s.httpClientMu.Lock()
	client := s.httpClient
	s.httpClientClosed = true
	s.httpClientMu.Unlock()
	if client == nil {
		return false, nil
	}
	if err := client.close(ctx); err != nil {
		return true, fmt.Errorf("kit: calls in flight on the HTTP client did not finish by the end of the shutdown: %w", err)
	}
	return true, nil
}
