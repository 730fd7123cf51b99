package kit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/batchconn"
	"github.com/connectkit/connectkit/internal/connctx"
)

// newHTTPServer builds the main listener's server with net/http's own
// protocol support: HTTP/1.1 plus HTTP/2 over TLS (ALPN) or, in cleartext,
// HTTP/2 with prior knowledge (h2c). Unlike the x/net/http2/h2c wrapper,
// whose hijacked connections escape Shutdown, these connections drain.
func (s *Server) newHTTPServer() (*http.Server, error) {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{
		// serving, with ConnContext, records each connection's HTTP version
		// for the log lines, as interceptors.HTTPVersion does, without
		// copying each request; ConnContext also lets serving grow an
		// HTTP/1.x connection's stack only when needed.
		Handler: serving(&s.handlers, s.notify.counter(), &s.draining, s.cfg.MaxConnectionAge > 0, s.cfg.ReadHeaderTimeout, s.withCORS(s.routes)),
		// fresh also keeps each connection until it closes (see
		// freshConns).
		ConnContext: s.connContext,
		ConnState:   s.connState,
		// Every call's context derives from s.calls, which the shutdown
		// cancels at its timeout (see Server.shutdown). One registration
		// per connection, none per call.
		BaseContext:       func(net.Listener) context.Context { return s.calls },
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    int(s.cfg.MaxHeaderBytes),
		// ReadTimeout and WriteTimeout stay zero: under HTTP/2 they become
		// per-stream timers that kill long streams. Calls are bounded by
		// deadlines instead, and dead peers by HTTP/2 pings.
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: s.cfg.MaxConcurrentStreams,
			// Ping a connection that has been silent this long, and close it
			// if the ping is not answered: a peer that vanished (a NAT
			// timeout, a dead node) no longer holds its streams forever.
			SendPingTimeout: time.Minute,
			PingTimeout:     15 * time.Second,
		},
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	if s.cfg.NoFrameBatching {
		// Close a connection whose peer stops reading what it asked for.
		// With frame batching, writes never wait on the socket and every
		// flush has its own deadline (batchconn's FlushTimeout, 30s), which
		// does this; the per-write deadline would only add two
		// SetWriteDeadline calls to every frame write.
		srv.HTTP2.WriteByteTimeout = time.Minute
	}
	switch {
	case s.opts.tls != nil:
		cfg := s.opts.tls
		if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
			return nil, errors.New("kit: WithTLSConfig: the config has no certificate (Certificates, GetCertificate or GetConfigForClient)")
		}
		srv.TLSConfig = cfg.Clone()
		if next := cfg.GetConfigForClient; next != nil {
			srv.TLSConfig.GetConfigForClient = withNextProtos(next)
		}
		protocols.SetHTTP2(true)
	case s.cfg.TLSCertFile != "":
		files, err := newKeyPairFiles("KIT_TLS_CERT_FILE", s.cfg.TLSCertFile, "KIT_TLS_KEY_FILE", s.cfg.TLSKeyFile, s.logger)
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = &tls.Config{GetCertificate: files.getCertificate, MinVersion: tls.VersionTLS12}
		protocols.SetHTTP2(true)
	default:
		protocols.SetUnencryptedHTTP2(true)
	}
	srv.Protocols = &protocols
	return srv, nil
}

// batching wraps ln so that its HTTP/2 connections coalesce writes and
// buffer reads (package internal/batchconn), unless turned off: h2c
// connections are recognized by their preface; beneath TLS, those that
// negotiate h2 by ALPN. Its connections' reads cut by the read deadline
// of a call's body ([setBodyReadDeadline]) fail with [bodyDeadlineMessage]
// rather than the socket's error, which names both ends' addresses (see
// [bodyTimer]).
func (s *Server) batching(ln net.Listener) (net.Listener, error) {
	if s.cfg.NoFrameBatching {
		return ln, nil
	}
	mode := batchconn.ModeH2C
	if s.tls {
		mode = batchconn.ModeALPN
		s.http.TLSConfig = batchconn.TLSConfig(s.http.TLSConfig)
	}
	bl, err := batchconn.NewListener(ln, batchconn.Config{Mode: mode, ReadDeadlineMessage: bodyDeadlineMessage})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("kit: frame batching: %w", err)
	}
	return bl, nil
}

// closeConns closes the main listener and every connection at once, once
// the graceful shutdown has run out of time. http.Server.Close closes the
// connections one after another, and a batched connection would wait up to
// a second in Close to flush to a client that stopped reading: so the
// batching listener first stops waiting (each Close then takes
// microseconds), while the graceful path keeps that grace for clients that
// read.
func (s *Server) closeConns() error {
	batchconn.SkipCloseGrace(s.ln) // does nothing without frame batching
	return s.http.Close()
}

// serve serves ln until the server shuts down.
func (s *Server) serve(ln net.Listener) error {
	if s.tls {
		return s.http.ServeTLS(ln, "", "")
	}
	return s.http.Serve(ln)
}

// withCORS answers browsers' preflights and exposes the protocol headers for
// the configured origins, so gRPC-Web and Connect calls from web pages keep
// their error codes, and REST calls may use any method of a route; the operator's own headers (KIT_CORS_ALLOWED_HEADERS,
// KIT_CORS_EXPOSED_HEADERS) come on top of the protocols'. A preflight's
// Access-Control-Request-Headers is normalised first (see
// [normalizeRequestHeaders]).
func (s *Server) withCORS(h http.Handler) http.Handler {
	if len(s.cfg.CORSAllowedOrigins) == 0 {
		return h
	}
	// WWW-Authenticate is a 401's challenge (see [WithAuth]), in the
	// header in every protocol: a page must read it to know how to
	// authenticate.
	exposed := append(connectcors.ExposedHeaders(), "X-Request-Id", "WWW-Authenticate")
	if s.cfg.RateLimit > 0 {
		// A Connect unary call's refusal says when to come back in a
		// header, which a browser would hide from the page.
		exposed = append(exposed, "Retry-After")
	}
	c := cors.New(cors.Options{
		AllowedOrigins: s.cfg.CORSAllowedOrigins,
		// Connect's GET and POST, and the other methods of REST routes
		// (see [restRoutes]): a path without a route answers them 404 or
		// 405 whatever its preflight said.
		AllowedMethods: append(connectcors.AllowedMethods(), http.MethodPut, http.MethodPatch, http.MethodDelete),
		AllowedHeaders: append(append(connectcors.AllowedHeaders(),
			"Authorization", "X-Request-Id", "Traceparent", "Tracestate", "Baggage"), s.cfg.CORSAllowedHeaders...),
		ExposedHeaders:   append(exposed, s.cfg.CORSExposedHeaders...),
		AllowCredentials: s.cfg.CORSAllowCredentials,
		MaxAge:           7200,
	}).Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			normalizeRequestHeaders(r.Header)
		}
		c.ServeHTTP(w, r)
	})
}

// normalizeRequestHeaders rewrites a preflight's Access-Control-Request-Headers
// as browsers send it (the Fetch standard's "CORS-unsafe request-header
// names": lower-case, sorted, without duplicates, one comma-separated line),
// which is the only form rs/cors accepts: it refuses a list out of order
// ("content-type,connect-protocol-version"), with a name repeated or in
// upper case, with more than one space or tab around a name, with more than
// 16 empty elements, or split over several header lines out of order, and
// answers such a preflight without any Access-Control-Allow-* header, as if
// a header were not allowed. curl users and some proxies send such lists.
// The names allowed are still rs/cors's to decide, and its answer's
// Access-Control-Allow-Headers is the normalised list. A list over
// [maxNormalizedRequestHeaders] is left as sent. Only ASCII letters
// are lower-cased: Unicode's lower case of KELVIN SIGN is "k", which would
// make a name no browser sends ("x-api-\u212aey") an allowed one.
func normalizeRequestHeaders(h http.Header) {
	lines, ok := h["Access-Control-Request-Headers"]
	if !ok {
		return
	}
	n := 0
	for _, line := range lines {
		if n += len(line); n > maxNormalizedRequestHeaders {
			return
		}
	}
	var names []string
	for _, line := range lines {
		for name := range strings.SplitSeq(line, ",") {
			if name = asciiLower(strings.Trim(name, " \t")); name != "" {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	h["Access-Control-Request-Headers"] = []string{strings.Join(slices.Compact(names), ",")}
}

// maxNormalizedRequestHeaders bounds the bytes, over all its lines, of an
// Access-Control-Request-Headers that [normalizeRequestHeaders] rewrites:
// a longer one reaches rs/cors as sent, which checks it in one pass without
// allocating, where splitting and sorting it would cost each such preflight
// time and memory growing with KIT_MAX_HEADER_BYTES (2.7 ms and 800 KB for
// 64 KiB of names). Browsers' lists are far shorter.
const maxNormalizedRequestHeaders = 4 << 10

// asciiLower returns s with its ASCII upper-case letters lower-cased and
// every other byte as it was; s itself when it has none.
func asciiLower(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
		return s // as browsers send it: no copy
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// serving counts every request's handler in wg while it runs (see
// [Server.shutdown]), and in calls when it is not nil (for systemd's
// STATUS= line, see [notifier]), records the request's HTTP version in its
// connection's State for the log lines (as [interceptors.HTTPVersion]
// does), once draining is set answers HTTP/1.x requests with
// "Connection: close" (HTTP/1.1 has no GOAWAY: without it, a keep-alive
// connection idle when the listener closes is closed under a client that
// may be sending on it just then), as it answers every request of a
// connection past its MaxConnectionAge when retire is set (see
// [Server.connContext]), and grows the stack of its goroutine before serving it
// (see [growStack]). HTTP/2 requests each run on a new goroutine.
// HTTP/1.x requests run on their connection's goroutine, whose stack the
// garbage collector halves while the connection waits for its next
// request, so it too would grow again, deep in the call, after every GC:
// growing it first took 14% off the CPU of a Connect JSON call over
// HTTP/1.1 at 50 in flight, and changed nothing at 1 in flight
// (BENCHMARKS.md). It is grown only after it was shrunk (see [growConnStack]).
//
// Once h has returned, it bounds net/http's reading of an HTTP/1.x
// request body that h left unread to unreadBody (see [boundUnreadBody]).
//
// It looks the connection's State up once and hands it to h when h is
// kit's routes (no CORS): each lookup walks the request's contexts, ~140
// instructions (BENCHMARKS.md 1.31).
func serving(wg *sync.WaitGroup, calls *atomic.Int64, draining *atomic.Bool, retire bool, unreadBody time.Duration, h http.Handler) http.Handler {
	rt, _ := h.(*routes)
	versioned := interceptors.HTTPVersion(h) // for a connection without a State
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		if calls != nil { // counted for systemd's STATUS= at shutdown only
			calls.Add(1)
			defer calls.Add(-1)
		}
		c := connctx.FromContext(r.Context())
		if c != nil {
			c.SetVersion(r)
		}
		if r.ProtoMajor == 1 && draining.Load() || retire && retired(c) {
			w.Header().Set("Connection", "close")
		}
		// HTTP/2 requests call growStack from here, not through a helper:
		// every frame on the stack when it grows costs about 1 000
		// instructions to copy. HTTP/1.x ones seldom grow.
		if r.ProtoMajor == 1 && c != nil {
			if growConnStack(&c.StackMark) {
				c.StackGrowths++
			}
		} else {
			growStack()
		}
		switch {
		case c == nil:
			versioned.ServeHTTP(w, r)
		case rt != nil:
			rt.serve(w, r, c)
		default:
			h.ServeHTTP(w, r)
		}
		if r.ProtoMajor == 1 {
			boundUnreadBody(w, r, unreadBody)
		}
	})
}
