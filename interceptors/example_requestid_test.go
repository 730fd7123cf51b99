package interceptors_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/google/uuid"
)

// requestIDPings answers Ping with the request id of the call it serves.
type requestIDPings struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (requestIDPings) Ping(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	// Log lines of interceptors.LoggerFrom(ctx) carry it as request_id too.
	id := interceptors.RequestIDFrom(ctx)
	return connect.NewResponse(&pingv1.PingResponse{Text: id}), nil
}

// This example gives every call a request id: the caller's X-Request-Id
// when it sends a valid one, otherwise a new UUID. The handler reads it
// with RequestIDFrom, and the response echoes it in X-Request-Id.
func ExampleRequestID() {
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(requestIDPings{}, connect.WithInterceptors(interceptors.RequestID())))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)

	req := connect.NewRequest(&pingv1.PingRequest{})
	req.Header().Set(interceptors.RequestIDHeader, "checkout-7f3a")
	res, err := client.Ping(context.Background(), req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("handler saw:", res.Msg.GetText())
	fmt.Println("response header:", res.Header().Get(interceptors.RequestIDHeader))

	res, err = client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, parseErr := uuid.Parse(res.Msg.GetText())
	fmt.Println("without one, a new UUID:", parseErr == nil, res.Header().Get(interceptors.RequestIDHeader) == res.Msg.GetText())
	// Output:
	// handler saw: checkout-7f3a
	// response header: checkout-7f3a
	// without one, a new UUID: true true
}
