package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/validate"

	"github.com/connectkit/connectkit/internal/conformance"
)

// Limits of the stand-in server, the hardened defaults kit.Server uses.
const (
	defaultMaxMessageBytes = 4 << 20 // per message, each way
	readHeaderTimeout      = 5 * time.Second
	idleTimeout            = 2 * time.Minute
	maxHeaderBytes         = 1 << 20
	maxConcurrentStreams   = 250
	// shutdownGrace is short because the runner stops the server only once
	// every RPC has completed, so nothing is left to drain: waiting longer
	// only waits for the client to close connections, up to 1 s per
	// HTTP/2 connection after GOAWAY and 5 s per connection it dialed and
	// never used (golang/go#22682), once per server config.
	shutdownGrace = 100 * time.Millisecond
)

// serve serves the conformance service on ln until ctx is done, then shuts
// down gracefully. tlsConf is nil for cleartext; readMaxBytes is the
// per-message receive limit, zero for the default.
//
// This is a stand-in for kit.Server, configured the way kit configures its
// main port: one listener for HTTP/1.1 and cleartext HTTP/2 (h2c with prior
// knowledge), HTTP/2 over TLS with ALPN, and connect handlers with
// validation and message size limits. It is the only function to replace
// when the conformance server moves onto kit.Server.
func serve(ctx context.Context, ln net.Listener, tlsConf *tls.Config, readMaxBytes int) error {
	if readMaxBytes <= 0 {
		readMaxBytes = defaultMaxMessageBytes
	}
	mux := http.NewServeMux()
	mux.Handle(conformance.NewHandler(
		connect.WithInterceptors(validate.NewInterceptor()),
		connect.WithReadMaxBytes(readMaxBytes),
		connect.WithSendMaxBytes(defaultMaxMessageBytes),
	))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams},
	}
	done := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			done <- srv.ServeTLS(ln, "", "")
			return
		}
		done <- srv.Serve(ln)
	}()
	select {
	case err := <-done:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		// No RPC is left, only connections the client keeps open.
		return srv.Close()
	}
	return err
}
