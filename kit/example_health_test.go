package kit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"connectrpc.com/connect"
	healthv1 "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/connectkit/connectkit/health"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// Checks registered on srv.Health() decide readiness: the gRPC health
// service on the main port (Kubernetes' gRPC probes, grpc_health_probe)
// and /readyz on the admin listener. A critical check that fails makes
// the whole server and every service NOT_SERVING; a non-critical one is
// only reported.
func ExampleServer_Health() {
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"},
		kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(pingv1connect.UnimplementedPingServiceHandler{}, srv.HandlerOptions()...))

	var dbDown atomic.Bool // stands for the state of a database
	db := func(context.Context) error {
		if dbDown.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
	// Run on each probe; health.PingCheck("postgres", db) does the same
	// for a *sql.DB.
	if err := srv.Health().AddCheck(health.Check{Name: "postgres", Func: db}); err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.Health().AddCheck(health.Check{Name: "geoip", NonCritical: true, Func: func(context.Context) error {
		return errors.New("stale database")
	}}); err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	grpcHealth := connect.NewClient[healthv1.HealthCheckRequest, healthv1.HealthCheckResponse](
		http.DefaultClient, "http://"+srv.Addr().String()+"/grpc.health.v1.Health/Check")
	probe := func(when string) {
		res, err := grpcHealth.CallUnary(ctx, connect.NewRequest(&healthv1.HealthCheckRequest{
			Service: pingv1connect.PingServiceName,
		}))
		if err != nil {
			fmt.Println(err)
			return
		}
		ready, err := http.Get("http://" + srv.AdminAddr().String() + "/readyz")
		if err != nil {
			fmt.Println(err)
			return
		}
		ready.Body.Close()
		fmt.Printf("%s gRPC health %s, /readyz %d\n", when, res.Msg.GetStatus(), ready.StatusCode)
	}
	probe("database up:")
	dbDown.Store(true)
	probe("database down:")
	dbDown.Store(false)
	probe("database back:")

	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	// Output:
	// database up: gRPC health SERVING, /readyz 200
	// database down: gRPC health NOT_SERVING, /readyz 503
	// database back: gRPC health SERVING, /readyz 200
	// clean shutdown: true
}
