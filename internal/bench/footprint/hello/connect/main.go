// Command connect is the smallest ping server on bare connect-go (HTTP/1.1
// and h2c on net/http), for the binary sizes of BENCHMARKS.md section 12.
package main

import (
	"context"
	"net/http"
	"os"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

type ping struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (ping) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: req.Msg.GetText()}), nil
}

func main() {
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(ping{}))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: mux, Protocols: &protocols}
	if err := srv.ListenAndServe(); err != nil {
		os.Exit(1)
	}
}
