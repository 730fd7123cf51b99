// Command kitnats is the kit ping server of ../kit with a pubsub broker
// (natsjs, the embedded NATS server by default) that publishes each ping,
// for the binary sizes of BENCHMARKS.md section 12: what the broker adds.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/connectkit/connectkit/internal/bench/footprint/hello/ping"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "kitnats:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) (err error) {
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		return err
	}
	natsCfg, err := natsjs.ConfigFromEnv()
	if err != nil {
		return err
	}
	srv, err := kit.New(cfg)
	if err != nil {
		return err
	}
	bus, err := natsjs.New(ctx, natsCfg, natsjs.WithLogger(srv.Logger()))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, bus.Close()) }()
	pings, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "pings", pubsub.WithClientOptions(srv.ClientOptions()...))
	if err != nil {
		return err
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(ping.Service{Sent: func(ctx context.Context, req *pingv1.PingRequest) error {
		return pings.Publish(ctx, req)
	}}, srv.HandlerOptions()...))
	return srv.Run(ctx)
}
