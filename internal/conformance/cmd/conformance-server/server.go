package main

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/connectkit/connectkit/internal/conformance"
	"github.com/connectkit/connectkit/kit"
)

// shutdownGrace is short because the runner stops the server only once
// every RPC has completed, so nothing is left to drain: waiting longer only
// waits for the client to close connections, up to 1 s per HTTP/2
// connection after GOAWAY and 5 s per connection it dialed and never used
// (golang/go#22682), once per server config.
const shutdownGrace = 100 * time.Millisecond

// newServer returns a kit.Server, with kit's default interceptor chain and
// limits, serving the conformance service on 127.0.0.1 at a random port.
// tlsConf is nil for cleartext; readMaxBytes is the per-message receive
// limit, zero for kit's default.
func newServer(tlsConf *tls.Config, readMaxBytes int) (*kit.Server, error) {
	cfg := kit.Config{
		Addr:            "127.0.0.1:0",
		AdminAddr:       kit.AdminOff, // up to 8 servers run at once
		ShutdownTimeout: shutdownGrace,
		MaxRequestBytes: int64(readMaxBytes),
		// The service echoes the deadline it sees, and the suite fails a
		// call that reports a timeout the client did not send.
		CallTimeout: kit.NoTimeout,
	}
	opts := []kit.Option{kit.WithLogger(slog.New(slog.DiscardHandler))}
	if tlsConf != nil {
		opts = append(opts, kit.WithTLSConfig(tlsConf))
	}
	srv, err := kit.New(cfg, opts...)
	if err != nil {
		return nil, err
	}
	srv.Mount(conformance.NewHandler(srv.HandlerOptions()...))
	return srv, nil
}
