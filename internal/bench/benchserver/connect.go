package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/connectkit/connectkit/internal/batchconn"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// serveConnect serves bare connect-go on net/http, with or without
// internal/batchconn's listener (variants connect, connect-batch and
// connect-batch-all).
func serveConnect(ctx context.Context, f flags, _ io.Writer, ready func(net.Addr)) error {
	var bcfg *batchconn.Config
	switch f.variant {
	case "connect-batch":
		bcfg = &batchconn.Config{}
		if f.tls {
			bcfg.Mode = batchconn.ModeALPN
		}
	case "connect-batch-all":
		bcfg = &batchconn.Config{Mode: batchconn.ModeAll}
	}
	inner, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	ln := inner
	if bcfg != nil {
		if ln, err = batchconn.NewListener(inner, *bcfg); err != nil {
			inner.Close()
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(pingService{}))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(!f.tls)
	protocols.SetHTTP2(f.tls)
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second}
	if f.tls {
		cert, err := selfSigned()
		if err != nil {
			return err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		if bcfg != nil && bcfg.Mode == batchconn.ModeALPN {
			srv.TLSConfig = batchconn.TLSConfig(srv.TLSConfig)
		}
	}

	served := make(chan error, 1)
	go func() {
		if f.tls {
			served <- srv.ServeTLS(ln, "", "") // adds ALPN h2 and wraps ln in crypto/tls
			return
		}
		served <- srv.Serve(ln)
	}()
	ready(inner.Addr())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
