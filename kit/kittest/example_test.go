package kittest_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/internal/exampletest"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

type pingServer struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (pingServer) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

// A test of a service over every protocol a kit.Server answers: NewServer
// runs your wiring on a random loopback port and stops it when the test
// ends (failing the test if the shutdown is not clean).
func ExampleNewServer() {
	exampletest.Run(func(t testing.TB) { // in your tests: func TestPing(t *testing.T) {
		srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
			s.Mount(pingv1connect.NewPingServiceHandler(pingServer{}, s.HandlerOptions()...))
		})
		for _, p := range srv.Protocols() {
			client := pingv1connect.NewPingServiceClient(p.Client, srv.URL, p.Options...)
			res, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 42}))
			if err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			fmt.Println(p.Name, res.Msg.GetNumber())
		}
	})
	// Output:
	// grpc 42
	// grpcweb/h2c 42
	// grpcweb/http1 42
	// connect+proto/h2c 42
	// connect+proto/http1 42
	// connect+json/h2c 42
	// connect+json/http1 42
}
