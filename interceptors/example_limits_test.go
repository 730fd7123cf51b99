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

// heldPing is a PingService whose Ping waits until release is closed.
type heldPing struct {
	pingv1connect.UnimplementedPingServiceHandler
	entered, release chan struct{}
}

func (h *heldPing) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	h.entered <- struct{}{}
	<-h.release
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

// This example lets a handler run one unary call at a time: while the
// first call runs, a second is refused at once with Unavailable, which
// clients with a retry policy, and load balancers, take to another
// instance. Once the first call is done, calls are admitted again.
func ExampleMaxInFlight() {
	held := &heldPing{entered: make(chan struct{}), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(held, connect.WithInterceptors(interceptors.MaxInFlight(1))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)
	ping := func() error {
		_, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		return err
	}

	first := make(chan error, 1)
	go func() { first <- ping() }()
	<-held.entered // the first call is running
	fmt.Println("while it runs:", ping())
	close(held.release)
	fmt.Println("first call:", <-first)
	go func() { <-held.entered }()
	fmt.Println("after it:", ping())
	// Output:
	// while it runs: unavailable: too many calls in flight: limit 1
	// first call: <nil>
	// after it: <nil>
}
