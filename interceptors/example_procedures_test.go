package interceptors_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// This example puts a rate limit on one method of a service, as go-kit
// wraps one endpoint in ratelimit.NewErroringLimiter: Ping takes a call a
// minute, and CountUp, of the same handler, is not limited.
func ExampleForProcedures() {
	limit := interceptors.ForProcedures(interceptors.RateLimit(rate.Every(time.Minute), 1),
		pingv1connect.PingServicePingProcedure)
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(limit)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)
	for i := 1; i <= 2; i++ {
		_, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		fmt.Printf("Ping %d: %v\n", i, err)
	}
	for i := 1; i <= 2; i++ {
		stream, err := client.CountUp(context.Background(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
		if err != nil {
			panic(err)
		}
		for stream.Receive() {
		}
		fmt.Printf("CountUp %d: %v\n", i, stream.Err())
	}
	// Output:
	// Ping 1: <nil>
	// Ping 2: resource_exhausted: rate limit exceeded: 1 call every 1m0s, burst 1
	// CountUp 1: <nil>
	// CountUp 2: <nil>
}
