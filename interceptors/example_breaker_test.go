package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/prometheus/client_golang/prometheus"
)

// This example calls a server that is down: after two failures in a row the
// breaker opens, and the third call fails at once without being sent.
func ExampleCircuitBreaker() {
	svc := &flakyService{}
	svc.code.Store(int32(connect.CodeUnavailable))
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(svc))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// The state change is logged at warn (without the time, for the output).
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "peer" {
				return slog.Attr{}
			}
			return a
		},
	}))
	breaker, err := interceptors.CircuitBreaker(logger, prometheus.NewRegistry(),
		interceptors.WithBreakerConsecutiveFailures(2),
		interceptors.WithBreakerOpenTimeout(30*time.Second),
	)
	if err != nil {
		panic(err)
	}
	// Put it inside Logging and Metrics (chain.Client()...) so that the
	// calls it refuses are logged and counted like the others.
	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL, connect.WithInterceptors(breaker))
	for i := 1; i <= 3; i++ {
		_, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{}))
		fmt.Printf("call %d: %v, refused: %t\n", i, connect.CodeOf(err), errors.Is(err, interceptors.ErrBreakerOpen))
	}
	// Output:
	// call 1: unavailable, refused: false
	// level=WARN msg="circuit breaker state changed" procedure=/connectkit.ping.v1.PingService/Ping from=closed to=open
	// call 2: unavailable, refused: false
	// call 3: unavailable, refused: true
}
