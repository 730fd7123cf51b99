package kit_test

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/authn"
	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// user is what the authentication func returns for a caller: the
// handlers read it with authn.GetInfo, and Principal names the caller in
// the rpc log line.
type user struct{ name string }

func (u user) Principal() string { return u.name }

// greeter answers Ping with the name of its caller.
type greeter struct{ pingServer }

func (g *greeter) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	u, _ := authn.GetInfo(ctx).(user)
	return connect.NewResponse(&pingv1.PingResponse{Text: "hello " + u.name}), nil
}

func ExampleWithAuth() {
	tokens := map[string]string{"s3cr3t": "alice"} // token → user
	auth := func(_ context.Context, r *http.Request) (any, error) {
		if r.URL.Path == "/connectkit.ping.v1.PingService/Fail" {
			return nil, nil // a public procedure
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return nil, authn.Errorf("missing bearer token")
		}
		for t, name := range tokens {
			if subtle.ConstantTimeCompare([]byte(token), []byte(t)) == 1 {
				return user{name: name}, nil
			}
		}
		return nil, authn.Errorf("unknown bearer token")
	}
	cfg := kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}
	srv, err := kit.New(cfg, kit.WithAuth(auth), kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(&greeter{}, srv.HandlerOptions()...))
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	client := pingv1connect.NewPingServiceClient(http.DefaultClient, "http://"+srv.Addr().String())
	_, err = client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{}))
	fmt.Println(err)

	req := connect.NewRequest(&pingv1.PingRequest{})
	req.Header().Set("Authorization", "Bearer s3cr3t")
	res, err := client.Ping(ctx, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Msg.GetText())

	// Fail is public: it runs, and fails as asked.
	_, err = client.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)}))
	fmt.Println(connect.CodeOf(err))

	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	// Output:
	// unauthenticated: missing bearer token
	// hello alice
	// not_found
	// clean shutdown: true
}
