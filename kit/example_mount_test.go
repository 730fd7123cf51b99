package kit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// Mount takes the (path, handler) pair that generated constructors return.
// The service answers gRPC, gRPC-Web and Connect, and its REST routes
// (google.api.http in the proto: here `get: "/v1/ping/{number}"`) go
// through the same handler and chain. Any net/http handler mounts beside it.
func ExampleServer_Mount() {
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	srv.Mount("/version", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "v1.2.3")
	}))
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	base := "http://" + srv.Addr().String()

	client := pingv1connect.NewPingServiceClient(http.DefaultClient, base)
	res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 7}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rpc:", res.Msg.GetNumber())

	rest, err := http.Get(base + "/v1/ping/8")
	if err != nil {
		fmt.Println(err)
		return
	}
	var body struct {
		Number string `json:"number"` // int64 is a string in protobuf JSON
	}
	err = json.NewDecoder(rest.Body).Decode(&body)
	_ = rest.Body.Close()
	fmt.Println("rest:", rest.StatusCode, body.Number, err)

	plain, err := http.Get(base + "/version")
	if err != nil {
		fmt.Println(err)
		return
	}
	version, _ := io.ReadAll(plain.Body)
	_ = plain.Body.Close()
	fmt.Println("plain:", string(version))

	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	// Output:
	// rpc: 7
	// rest: 200 8 <nil>
	// plain: v1.2.3
	// clean shutdown: true
}
