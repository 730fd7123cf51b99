package kit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/bufbuild/httplb"
	"github.com/bufbuild/httplb/resolver"
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
	// answer or in a gRPC answer's trailers, the connection lost.
	// In Go, 0 takes the default and [OutlierOff] turns ejection off; in
	// the environment, "0" and "off" both turn it off.
	// KIT_CLIENT_OUTLIER_FAILURES, default 5.
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
// that gRPC works without TLS, and over TLS for https:// ones; an http://
// server that answers the h2c preface in HTTP/1.x is called over HTTP/1.1
// (the call sent again, if its body can be: see the README), and such a
// call counts in kit_client_http1_calls_total{peer} and has
// network.protocol.version "1.1" on its client span. It resolves
// each name it calls to all of its addresses, opens one connection to each,
// and sends the calls to them in turn (round robin): a Kubernetes headless
// Service's name spreads the calls over all of its Pods ([WithClientAddresses]
// gives a host a fixed list instead of DNS's). It resolves the
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
		cfg := s.cfg.HTTPClient.withDefaults()
		res := newResolver(s.opts.resolver, s.opts.clientAddrs, cfg.ResolveInterval)
		s.httpClient = newBalancedClient(cfg, s.clientTLS, res, nil, s.logger, s.clientMetrics)
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
	logger *slog.Logger, metrics clientMetrics) *balancedClient {
	res = newResolver(res, nil, cfg.ResolveInterval)
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
// prior knowledge, without TLS, or HTTP/1.1 to a server that speaks only
// that (see cleartextTransport).
type h2cTransport struct{ h *dialHealth }

func (t h2cTransport) NewRoundTripper(_, addr string, cfg httplb.TransportConfig) httplb.RoundTripperResult {
	ct := newCleartextTransport(addr, cfg, t.h.outlier.logger)
	ct.http1Calls = t.h.outlier.metrics.http1Calls
	return t.h.leaf(addr, ct)
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

// leafTransport is the transport of one address.
type leafTransport interface {
	http.RoundTripper
	CloseIdleConnections()
}

// leaf returns the round tripper of addr, by t: its calls' answers are
// judged for addr's ejection, and their bodies' read errors go through
// peerGone.
func (h *dialHealth) leaf(addr string, t leafTransport) httplb.RoundTripperResult {
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
