package kit

import (
	"context"
	"crypto/tls"

	"github.com/connectkit/connectkit/internal/connctx"
)

// withNextProtos wraps a tls.Config's GetConfigForClient so that the
// configs it returns without NextProtos offer HTTP/2 and HTTP/1.1 by ALPN.
// A returned config replaces the server's for the handshake, NextProtos
// included, and net/http adds "h2" to its own config only: without this, a
// config that rotates certificates or picks them per client negotiates no
// protocol, so clients fall back to HTTP/1.1 (no bidi streams) or fail, as
// grpc-go does ("missing selected ALPN property"). A config that lists its
// own NextProtos keeps them.
func withNextProtos(next func(*tls.ClientHelloInfo) (*tls.Config, error)) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cfg, err := next(hello)
		if cfg == nil || err != nil || len(cfg.NextProtos) > 0 {
			return cfg, err
		}
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		return cfg, nil
	}
}

// TLSFrom returns the TLS state of the connection that the call ctx belongs
// to came over, as net/http's Request.TLS gives it to HTTP handlers: the
// negotiated version and protocol and, under mutual TLS, the client's
// verified chain (PeerCertificates[0] is the client's certificate). connect
// shows handlers and interceptors no *http.Request, and its Peer carries no
// certificate. It returns nil over cleartext and for a ctx that is no call's
// of a [Server] (a pubsub delivery's, say). Each call copies the state.
func TLSFrom(ctx context.Context) *tls.ConnectionState {
	c := connctx.FromContext(ctx)
	if c == nil || c.TLS == nil {
		return nil
	}
	state := c.TLS.ConnectionState()
	if !state.HandshakeComplete {
		return nil
	}
	return &state
}
