package kit_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

func ExampleNew() {
	// In func main, cfg comes from kit.ConfigFromEnv(); the zero Config
	// works too. Port 0 picks a free port for this example.
	cfg := kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}
	srv, err := kit.New(cfg, kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	// Any Connect, gRPC or gRPC-Web client calls it on the same port.
	client := pingv1connect.NewPingServiceClient(http.DefaultClient, "http://"+srv.Addr().String())
	res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 42}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("ping:", res.Msg.GetNumber())

	// Requests are validated against the proto's rules.
	_, err = client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	fmt.Println(connect.CodeOf(err))

	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	// Output:
	// ping: 42
	// invalid_argument
	// clean shutdown: true
}

func ExampleConfigFromEnv() {
	// A value that does not parse stops the start, naming the variable.
	os.Setenv("KIT_SHUTDOWN_TIMEOUT", "15") // a unit forgotten
	defer os.Unsetenv("KIT_SHUTDOWN_TIMEOUT")
	_, err := kit.ConfigFromEnv()
	fmt.Println(err)

	os.Setenv("KIT_SHUTDOWN_TIMEOUT", "15s")
	cfg, err := kit.ConfigFromEnv()
	fmt.Println(cfg.ShutdownTimeout, err)
	// Output:
	// kit: invalid config: KIT_SHUTDOWN_TIMEOUT="15": want a duration such as "500ms", "15s" or "2m"
	// 15s <nil>
}

func ExampleConfig_RegisterFlags() {
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		fmt.Println(err)
		return
	}
	// In func main: cfg.RegisterFlags(flag.CommandLine); flag.Parse().
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-addr", ":8081", "-log-level", "debug", "-call-timeout", "off"}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Addr, cfg.LogLevel, cfg.CallTimeout == kit.NoTimeout)
	// Output:
	// :8081 DEBUG true
}

// Background components run under the server's lifecycle: cancelled at
// shutdown and awaited by Run; one that fails stops the server.
func ExampleServer_Go() {
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Go(func(ctx context.Context) error { // a subscriber, a cache refresher...
		<-ctx.Done()
		fmt.Println("refresher: stopped")
		return nil
	})
	srv.Go(func(context.Context) error {
		return errors.New("consumer: broker unreachable")
	})
	fmt.Println("Run:", srv.Run(context.Background()))
	// Output:
	// refresher: stopped
	// Run: kit: background component: consumer: broker unreachable
}
