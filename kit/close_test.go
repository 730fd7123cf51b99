package kit_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// TestCloseNeverRun: a program that calls other services without serving
// (a command) makes a Server it never runs, for its HTTP client and client
// chain. Close writes the log lines kit's logger still holds, which such a
// program lost when it exited (its info lines are written every 5 ms:
// `example list -log-level info` printed none of its call's), closes the
// HTTP client, and leaves a server that cannot be run or listen.
func TestCloseNeverRun(t *testing.T) {
	t.Parallel()
	pings := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	})
	var logs syncBuffer
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(kit.NewLogger(&logs, "json", slog.LevelInfo)))
	if err != nil {
		t.Fatal(err)
	}
	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), pings.URL, srv.ClientOptions()...)
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if got := logs.String(); !strings.Contains(got, `"kind":"client","procedure":"/connectkit.ping.v1.PingService/Ping"`) {
		t.Errorf("the log after Close: %q; want the call's client line", got)
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 2})); err == nil {
		t.Error("a call through the HTTP client after Close succeeded")
	}
	if err := srv.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("Run after Close = %v, want an error saying so", err)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Errorf("a second Close = %v, want nil", err)
	}
}

// TestCloseRacingRun: Close and Run of a server, at once. One of them
// wins: either Close fails (Run runs it, and shuts it down) or Run fails
// (after Close), but never both succeed: Run checked Close's mark in
// Listen and then, the lock released, marked the server running, so a
// Close between the two closed its listener and client under a Run that
// went on to serve, failing with the closed listener's error.
func TestCloseRacingRun(t *testing.T) {
	t.Parallel()
	for i := range 200 {
		srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan error, 1)
		go func() { ran <- srv.Run(ctx) }()
		closeErr := srv.Close(t.Context())
		cancel()
		runErr := <-ran
		switch {
		case closeErr == nil && (runErr == nil || !strings.Contains(runErr.Error(), "after Close")):
			t.Fatalf("round %d: Close succeeded, and Run returned %v; want Run to refuse the closed server", i, runErr)
		case closeErr != nil && runErr != nil:
			t.Fatalf("round %d: Close failed (%v), and Run too: %v", i, closeErr, runErr)
		}
	}
}

// TestCloseAfterRun: Close after Run returned does nothing and returns
// nil (Run's shutdown did what Close does), so that a program may defer
// Close whether or not it runs the server; it failed, saying Run runs it.
func TestCloseAfterRun(t *testing.T) {
	t.Parallel()
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := srv.Run(ctx); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Errorf("Close after Run = %v, want nil", err)
	}
}
