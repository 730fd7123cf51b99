package kit_test

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	healthv1 "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/connectkit/connectkit/health"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// bearerAuth is an interceptor of your own: server calls must carry
// "Authorization: Bearer <token>", but for health probes and deliveries.
type bearerAuth string

func (a bearerAuth) check(ctx context.Context, spec connect.Spec, h http.Header) error {
	if strings.HasPrefix(spec.Procedure, "/"+health.ServiceName+"/") {
		return nil // Kubernetes' gRPC probes and grpc_health_probe send no token
	}
	if _, ok := pubsub.MessageInfoFrom(ctx); ok {
		return nil // a pubsub delivery: its headers are a message's, not a caller's
	}
	// In constant time: a plain comparison tells an attacker, by its
	// timing, how much of a guess was right.
	if subtle.ConstantTimeCompare([]byte(h.Get("Authorization")), []byte("Bearer "+string(a))) != 1 {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("missing or wrong token"))
	}
	return nil
}

func (a bearerAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := a.check(ctx, req.Spec(), req.Header()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a bearerAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a bearerAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := a.check(ctx, conn.Spec(), conn.RequestHeader()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// Interceptors of your own run inside the default chain, on every call of
// the handlers built with srv.HandlerOptions() (kit's gRPC health and
// reflection services included), and on every delivery of the pubsub
// subscribers built with them too.
func ExampleWithInterceptors() {
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(slog.New(slog.DiscardHandler)), kit.WithInterceptors(bearerAuth("s3cret")))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	bus := mem.New()
	handled := make(chan string, 1)
	sub, err := pubsub.NewSubscriber(bus, "pings", "audit", func(_ context.Context, msg *pingv1.PingRequest) error {
		handled <- msg.GetText()
		return nil
	}, pubsub.WithHandlerOptions(srv.HandlerOptions()...))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Go(sub.Run)
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	client := pingv1connect.NewPingServiceClient(http.DefaultClient, "http://"+srv.Addr().String())
	_, err = client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 1}))
	fmt.Println(connect.CodeOf(err))
	req := connect.NewRequest(&pingv1.PingRequest{Number: 1})
	req.Header().Set("Authorization", "Bearer s3cret")
	_, err = client.Ping(ctx, req)
	fmt.Println(err)

	probe := connect.NewClient[healthv1.HealthCheckRequest, healthv1.HealthCheckResponse](
		http.DefaultClient, "http://"+srv.Addr().String()+"/grpc.health.v1.Health/Check")
	status, err := probe.CallUnary(ctx, connect.NewRequest(&healthv1.HealthCheckRequest{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("health:", status.Msg.GetStatus())

	pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "pings", pubsub.WithClientOptions(srv.ClientOptions()...))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pub.Publish(ctx, &pingv1.PingRequest{Text: "hello"}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("handled:", <-handled)
	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	// Output:
	// unauthenticated
	// <nil>
	// health: SERVING
	// handled: hello
	// clean shutdown: true
}

// tenant is an interceptor for the client side: it stamps the caller's
// tenant on every call and publish made with srv.ClientOptions().
var tenant = connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			req.Header().Set("X-Tenant", "acme")
		}
		return next(ctx, req)
	}
})

// Interceptors of kit.WithClientInterceptors run on the clients and the
// pubsub publishers built with srv.ClientOptions(): a header they set on a
// publish is a header of the message.
func ExampleWithClientInterceptors() {
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(slog.New(slog.DiscardHandler)), kit.WithClientInterceptors(tenant))
	if err != nil {
		fmt.Println(err)
		return
	}
	bus := mem.New()
	handled := make(chan string, 1)
	sub, err := pubsub.NewSubscriber(bus, "pings", "audit", func(ctx context.Context, msg *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		handled <- msg.GetText() + " from " + info.Header.Get("X-Tenant")
		return nil
	}, pubsub.WithHandlerOptions(srv.HandlerOptions()...))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Go(sub.Run)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "pings", pubsub.WithClientOptions(srv.ClientOptions()...))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	if err := pub.Publish(ctx, &pingv1.PingRequest{Text: "hello"}); err != nil {
		fmt.Println(err)
	}
	fmt.Println(<-handled)
	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	// Output:
	// hello from acme
	// clean shutdown: true
}
