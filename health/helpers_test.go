package health_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connectkit/connectkit/health"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// serve serves h's gRPC health service, /readyz and /healthz on a loopback
// port over HTTP/1.1 and h2c (net/http's own), and returns the address.
func serve(tb testing.TB, h *health.Checker) string {
	tb.Helper()
	mux := http.NewServeMux()
	mux.Handle(health.NewHandler(h))
	mux.Handle("/readyz", h.ReadyHandler(health.ShowErrors()))
	mux.Handle("/healthz", h.LiveHandler(health.ShowErrors()))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(h.CloseWatches)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// grpcClient returns a google.golang.org/grpc health client of addr.
func grpcClient(tb testing.TB, addr string) healthpb.HealthClient {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// h2cClient returns an HTTP client speaking HTTP/2 without TLS, as gRPC
// needs.
func h2cClient(tb testing.TB) *http.Client {
	tb.Helper()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// run runs h's background checks until the test ends.
func run(tb testing.TB, h *health.Checker) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
}

// switchable is a check whose result the test sets, counting its calls.
type switchable struct {
	err   atomic.Pointer[error]
	calls atomic.Int64
}

func (s *switchable) fail(err error) { s.err.Store(&err) }
func (s *switchable) pass()          { s.err.Store(nil) }

func (s *switchable) check(context.Context) error {
	s.calls.Add(1)
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// eventually polls cond until it holds, failing the test after a deadline
// generous enough for a loaded machine.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustAdd(tb testing.TB, h *health.Checker, c health.Check) {
	tb.Helper()
	if err := h.AddCheck(c); err != nil {
		tb.Fatal(err)
	}
}

func ctxTimeout(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	tb.Cleanup(cancel)
	return ctx
}
