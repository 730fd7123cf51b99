// Command conformance-server is the server under test of the Connect
// conformance suite (connectconformance --mode server). It reads a
// size-delimited ServerCompatRequest on stdin, serves the conformance service
// on 127.0.0.1 at a random port (with TLS and client certificates when
// asked), writes a size-delimited ServerCompatResponse with the address and
// certificate on stdout, and serves until SIGTERM or SIGINT.
//
//	make conformance
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/connectkit/connectkit/internal/conformance"
	conformancev1 "github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "conformance-server:", err)
		os.Exit(1)
	}
}

// run answers one ServerCompatRequest read from stdin and serves until ctx
// is done. The request's protocol and HTTP version need no setup: like
// kit.Server, the server speaks every protocol over HTTP/1.1 and HTTP/2 on
// one listener.
func run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var req conformancev1.ServerCompatRequest
	if err := conformance.ReadDelimited(stdin, &req); err != nil {
		return err
	}
	tlsConf, err := conformance.ServerTLSConfig(&req)
	if err != nil {
		return fmt.Errorf("bad ServerCompatRequest: %w", err)
	}
	srv, err := newServer(tlsConf, int(req.GetMessageReceiveLimit()))
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("listener address %v is not TCP", srv.Addr())
	}

	// The listener is bound, so the runner's first connections wait in its
	// backlog until Run accepts them: no need to wait before answering.
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	resp := &conformancev1.ServerCompatResponse{Host: addr.IP.String(), Port: uint32(addr.Port)}
	if tlsConf != nil {
		resp.PemCert = req.GetServerCreds().GetCert()
	}
	if err := conformance.WriteDelimited(stdout, resp); err != nil {
		return errors.Join(err, <-done)
	}
	if err := <-done; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// A shutdown that timed out only cut connections the client kept open:
	// the runner stops a server once every call has completed.
	return nil
}
