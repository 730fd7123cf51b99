// Command benchserver serves connectkit.ping.v1.PingService on loopback for
// the benchmark suite (scripts/bench.sh, driven by internal/bench/benchrun).
// Each -variant is one way of serving the same handler; it prints
// "listening on ADDR" once it accepts connections and shuts down gracefully
// on SIGINT or SIGTERM.
//
// Variants:
//
//	connect            bare connect-go on net/http: HTTP/1.1 and h2c on one port
//	connect-batch      the same behind internal/batchconn's listener: h2c
//	                   connections batched (ModeH2C), or with -tls those
//	                   offering h2 by ALPN (ModeALPN and batchconn.TLSConfig)
//	connect-batch-all  every connection batched (batchconn.ModeAll)
//
// With -tls it serves HTTP/1.1 and HTTP/2 over TLS (ALPN) with a
// self-signed certificate made at start, the batching listener beneath
// crypto/tls.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/internal/batchconn"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// listenerFor returns the batchconn configuration of a variant (nil: no
// batching) and whether its tls.Config goes through batchconn.TLSConfig.
func listenerFor(variant string, useTLS bool) (*batchconn.Config, error) {
	switch variant {
	case "connect":
		return nil, nil
	case "connect-batch":
		if useTLS {
			return &batchconn.Config{Mode: batchconn.ModeALPN}, nil
		}
		return &batchconn.Config{}, nil
	case "connect-batch-all":
		return &batchconn.Config{Mode: batchconn.ModeAll}, nil
	}
	return nil, fmt.Errorf("unknown -variant %q", variant)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	variant := flag.String("variant", "connect", "server variant: connect, connect-batch, connect-batch-all")
	useTLS := flag.Bool("tls", false, "serve TLS (HTTP/1.1 and h2 by ALPN) with a self-signed certificate")
	flag.Parse()
	if err := run(*addr, *variant, *useTLS); err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

func run(addr, variant string, useTLS bool) error {
	bcfg, err := listenerFor(variant, useTLS)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	inner, err := net.Listen("tcp", addr)
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
	protocols.SetUnencryptedHTTP2(!useTLS)
	protocols.SetHTTP2(useTLS)
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second}
	if useTLS {
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
		if useTLS {
			served <- srv.ServeTLS(ln, "", "") // adds ALPN h2 and wraps ln in crypto/tls
			return
		}
		served <- srv.Serve(ln)
	}()
	fmt.Printf("listening on %s\n", inner.Addr())
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

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "benchserver"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// pingService answers Ping with its request, as small a handler as can be.
type pingService struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (pingService) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: req.Msg.GetText()}), nil
}
