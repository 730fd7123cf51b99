package interceptors_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// This example limits a handler to a call a minute, in bursts of two: the
// third call is refused at once, with ResourceExhausted, which a Connect
// client over plain HTTP gets as 429 Too Many Requests.
func ExampleRateLimit() {
	limit := interceptors.RateLimit(rate.Every(time.Minute), 2)
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(limit)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)
	for i := 1; i <= 3; i++ {
		_, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		fmt.Printf("call %d: %v\n", i, err)
	}
	res, err := srv.Client().Post(srv.URL+pingv1connect.PingServicePingProcedure, "application/json", strings.NewReader(`{}`))
	if err != nil {
		panic(err)
	}
	_ = res.Body.Close()
	fmt.Println("JSON:", res.Status)
	// Output:
	// call 1: <nil>
	// call 2: <nil>
	// call 3: resource_exhausted: rate limit exceeded: 1 call every 1m0s, burst 2
	// JSON: 429 Too Many Requests
}
