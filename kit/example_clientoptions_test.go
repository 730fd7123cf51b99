package kit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// flakyPings answers Unavailable to the first calls of Ping, as many as
// failures says, then answers them.
type flakyPings struct {
	pingv1connect.UnimplementedPingServiceHandler
	failures int64
	calls    atomic.Int64
}

func (s *flakyPings) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if s.calls.Add(1) <= s.failures {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("warming up"))
	}
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

// Clients built with srv.ClientOptions() retry and break circuits as
// Config.ClientRetry and Config.ClientBreaker say (KIT_CLIENT_RETRY_*,
// KIT_CLIENT_BREAKER_*; both off by default). A program that calls other
// services without serving, as this one does, closes the server before it
// exits.
func ExampleServer_ClientOptions() {
	quiet := kit.WithLogger(slog.New(slog.DiscardHandler))
	// The service called: it fails twice, then answers.
	upstream := &flakyPings{failures: 2}
	pings, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	pings.Mount(pingv1connect.NewPingServiceHandler(upstream, pings.HandlerOptions()...))
	if err := pings.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = pings.Run(ctx) }()

	srv, err := kit.New(kit.Config{
		AdminAddr:   kit.AdminOff,
		ClientRetry: kit.ClientRetryConfig{Enabled: true, InitialBackoff: 10 * time.Millisecond},
	}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close(context.Background())
	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), "http://"+pings.Addr().String(), srv.ClientOptions()...)
	// Ping is idempotent (option idempotency_level = NO_SIDE_EFFECTS in
	// its proto): an Unavailable is retried, up to 3 attempts by default.
	res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 42}))
	fmt.Println(res.Msg.GetNumber(), err, "after", upstream.calls.Load(), "attempts")
	// Output:
	// 42 <nil> after 3 attempts
}

// With the circuit breaker on, a server that keeps failing is left alone:
// calls fail at once with Unavailable, whose cause is
// interceptors.ErrBreakerOpen, until OpenTimeout has passed.
func ExampleServer_ClientOptions_breaker() {
	quiet := kit.WithLogger(slog.New(slog.DiscardHandler))
	upstream := &flakyPings{failures: 1000} // down for good
	pings, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	pings.Mount(pingv1connect.NewPingServiceHandler(upstream, pings.HandlerOptions()...))
	if err := pings.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = pings.Run(ctx) }()

	srv, err := kit.New(kit.Config{
		AdminAddr:     kit.AdminOff,
		ClientBreaker: kit.ClientBreakerConfig{Enabled: true, ConsecutiveFailures: 2, OpenTimeout: time.Minute},
	}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close(context.Background())
	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), "http://"+pings.Addr().String(), srv.ClientOptions()...)
	for range 3 {
		_, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{}))
		fmt.Println(connect.CodeOf(err), "refused by the breaker:", errors.Is(err, interceptors.ErrBreakerOpen))
	}
	fmt.Println("calls that reached the server:", upstream.calls.Load())
	// Output:
	// unavailable refused by the breaker: false
	// unavailable refused by the breaker: false
	// unavailable refused by the breaker: true
	// calls that reached the server: 2
}
