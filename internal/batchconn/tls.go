package batchconn

import (
	"crypto/tls"
	"slices"
)

// TLSConfig returns a copy of cfg (nil: an empty one) for a crypto/tls
// listener stacked on a [ModeALPN] batchconn listener, as net/http's
// ServeTLS or [tls.NewListener] build it. Its GetConfigForClient, called
// with the ClientHello, batches the underlying connection if the client
// offers "h2", then defers to cfg's own GetConfigForClient, if any.
//
// net/http's server lists "h2" first, so a client that offers it gets
// HTTP/2; should another protocol be negotiated anyway, the connection
// stays batched, which costs little.
func TLSConfig(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	out := cfg.Clone()
	next := cfg.GetConfigForClient
	out.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c, ok := hello.Conn.(*conn); ok && slices.Contains(hello.SupportedProtos, "h2") {
			// The handshake runs on the only goroutine using the
			// connection, so switching now races with no read or write.
			c.mode.CompareAndSwap(modePending, modeBatched)
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil
	}
	return out
}
