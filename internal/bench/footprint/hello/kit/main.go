// Command kit is the smallest ping server on kit (kit.New with its defaults
// from the environment, the full chain, the admin port), for the binary
// sizes of BENCHMARKS.md section 12.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/connectkit/connectkit/internal/bench/footprint/hello/ping"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

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
	srv.Mount(pingv1connect.NewPingServiceHandler(ping.Service{}, srv.HandlerOptions()...))
	return srv.Run(ctx)
}
