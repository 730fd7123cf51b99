package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// countedPings counts the Ping calls that reach it.
type countedPings struct {
	pingv1connect.UnimplementedPingServiceHandler
	calls atomic.Int64
}

func (s *countedPings) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	s.calls.Add(1)
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

// This example checks requests against the protovalidate rules of their
// proto (PingRequest's number has [(buf.validate.field).int64.gte = 0]).
// An invalid request fails with InvalidArgument before the handler runs,
// and its error details name each field and rule broken, as
// google.rpc.BadRequest (and buf.validate.Violations).
func ExampleValidation() {
	svc := &countedPings{}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(svc, connect.WithInterceptors(interceptors.Validation())))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)
	_, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	fmt.Println(connect.CodeOf(err))
	var connectErr *connect.Error
	if errors.As(err, &connectErr) {
		for _, detail := range connectErr.Details() {
			value, err := detail.Value()
			if err != nil {
				fmt.Println(err)
				return
			}
			if bad, ok := value.(*errdetails.BadRequest); ok {
				for _, v := range bad.GetFieldViolations() {
					fmt.Printf("field %s: %s\n", v.GetField(), v.GetDescription())
				}
			}
		}
	}
	fmt.Println("handler calls:", svc.calls.Load())

	// On a client, it checks requests before they are sent.
	checked := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL, connect.WithInterceptors(interceptors.Validation()))
	_, err = checked.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	fmt.Println(err)
	res, err := checked.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 7}))
	fmt.Println(res.Msg.GetNumber(), err, "handler calls:", svc.calls.Load())
	// Output:
	// invalid_argument
	// field number: must be greater than or equal to 0
	// handler calls: 0
	// invalid_argument: validation error: number: must be greater than or equal to 0
	// 7 <nil> handler calls: 1
}
