package kit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// headerEcho answers Ping with the tenant headers it was called with.
type headerEcho struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (headerEcho) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	text := "x-md-global-tenant=" + req.Header().Get("X-Md-Global-Tenant") + " baggage=" + req.Header().Get("Baggage")
	return connect.NewResponse(&pingv1.PingResponse{Text: text}), nil
}

// relay answers Ping with what the service behind it answers.
type relay struct {
	pingv1connect.UnimplementedPingServiceHandler
	next pingv1connect.PingServiceClient
}

func (r relay) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return r.next.Ping(ctx, connect.NewRequest(req.Msg)) // a request of its own, with the call's context
}

// Headers such as Kratos' x-md-global-* (metadata.Server() and
// metadata.Client()) go from an incoming call to the calls its handler makes
// with srv.ClientOptions(), and to its publishes, with
// interceptors.WithForwardHeaders; the W3C baggage goes without it. It works
// for every protocol, REST routes included.
func ExampleWithInterceptorOptions_forwardHeaders() {
	quiet := kit.WithLogger(slog.New(slog.DiscardHandler))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 2)
	start := func(srv *kit.Server) string {
		if err := srv.Listen(); err != nil {
			fmt.Println(err)
			return ""
		}
		go func() { done <- srv.Run(ctx) }()
		return "http://" + srv.Addr().String()
	}
	cfg := kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}

	backend, err := kit.New(cfg, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	backend.Mount(pingv1connect.NewPingServiceHandler(headerEcho{}, backend.HandlerOptions()...))
	backendURL := start(backend)

	front, err := kit.New(cfg, quiet,
		kit.WithInterceptorOptions(interceptors.WithForwardHeaders("x-md-global-*")))
	if err != nil {
		fmt.Println(err)
		return
	}
	next := pingv1connect.NewPingServiceClient(front.HTTPClient(), backendURL, front.ClientOptions()...)
	front.Mount(pingv1connect.NewPingServiceHandler(relay{next: next}, front.HandlerOptions()...))
	frontURL := start(front)

	req := connect.NewRequest(&pingv1.PingRequest{Number: 1})
	req.Header().Set("X-Md-Global-Tenant", "acme")
	req.Header().Set("X-Md-Local-Trace", "not forwarded")
	req.Header().Set("Baggage", "tenant=acme")
	res, err := pingv1connect.NewPingServiceClient(http.DefaultClient, frontURL).Ping(ctx, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("Connect:", res.Msg.GetText())

	rest, err := http.NewRequestWithContext(ctx, http.MethodGet, frontURL+"/v1/ping/1", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	rest.Header.Set("X-Md-Global-Tenant", "acme")
	rest.Header.Set("Baggage", "tenant=acme")
	resp, err := http.DefaultClient.Do(rest)
	if err != nil {
		fmt.Println(err)
		return
	}
	var body struct {
		Text string `json:"text"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	_ = resp.Body.Close()
	fmt.Println("REST:", body.Text)
	stop()
	first, second := <-done, <-done
	fmt.Println("clean shutdowns:", first == nil && second == nil)
	// Output:
	// Connect: x-md-global-tenant=acme baggage=tenant=acme
	// REST: x-md-global-tenant=acme baggage=tenant=acme
	// clean shutdowns: true
}
