// Command kit is the smallest ping server on kit (kit.New with its defaults
// from the environment, the full chain, the admin port), for the binary
// sizes of BENCHMARKS.md section 12.
package main

import (
	"context"
	"fmt"
	"os"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

type ping struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (ping) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: req.Msg.GetText()}), nil
}

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "kit:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		return err
	}
	srv, err := kit.New(cfg)
	if err != nil {
		return err
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(ping{}, srv.HandlerOptions()...))
	return srv.Run(ctx)
}
