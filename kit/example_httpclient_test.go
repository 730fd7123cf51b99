package kit_test

import (
	"context"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

func ExampleServer_HTTPClient() {
	quiet := kit.WithLogger(slog.New(slog.DiscardHandler))
	// The service called: any kit server (or gRPC server) answering on h2c.
	pings, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	pings.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, pings.HandlerOptions()...))
	if err := pings.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = pings.Run(ctx) }()

	// The calling service: its HTTP client balances over every address
	// the name resolves to (here one), with its client chain.
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), "http://"+pings.Addr().String(),
		append(srv.ClientOptions(), connect.WithGRPC())...) // gRPC, without TLS
	res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 42}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("ping over gRPC:", res.Msg.GetNumber())

	stop() // the shutdown closes the client once its calls are done
	fmt.Println("clean shutdown:", <-done == nil)
	// Output:
	// ping over gRPC: 42
	// clean shutdown: true
}
