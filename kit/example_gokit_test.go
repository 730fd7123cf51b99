package kit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// errUnknownSKU is a domain error, as go-kit services declare them.
var errUnknownSKU = errors.New("unknown sku")

type tenantKey struct{}

// skuPings answers Ping with the caller's tenant, and fails number 404 with
// the domain error alone: the handler knows nothing of codes.
type skuPings struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (skuPings) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if req.Msg.GetNumber() == 404 {
		return nil, fmt.Errorf("%w: %d", errUnknownSKU, req.Msg.GetNumber())
	}
	tenant, _ := ctx.Value(tenantKey{}).(string)
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: tenant}), nil
}

// goKitHooks is go-kit's ServerBefore (the X-Tenant header into the
// context) and ErrorEncoder (domain errors to codes) as one server
// interceptor. Given to kit.WithInterceptors it runs inside kit's Logging
// and Metrics, which log and count the code it sets.
func goKitHooks(codes map[error]connect.Code) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			ctx = context.WithValue(ctx, tenantKey{}, req.Header().Get("X-Tenant"))
			res, err := next(ctx, req)
			for target, code := range codes {
				if errors.Is(err, target) {
					return nil, connect.NewError(code, err)
				}
			}
			return res, err
		}
	})
}

// A go-kit service's ServerBefore and ErrorEncoder, as an interceptor: the
// REST route's call gets the tenant from its header too, and the HTTP status
// of the mapped code; kit's rpc log line (go-kit's ServerFinalizer) has it.
func ExampleWithInterceptors_goKit() {
	var logs bytes.Buffer
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		kit.WithInterceptors(goKitHooks(map[error]connect.Code{errUnknownSKU: connect.CodeNotFound})))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(skuPings{}, srv.HandlerOptions()...))
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	base := "http://" + srv.Addr().String()

	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), base, connect.WithGRPC())
	for _, n := range []int64{1, 404} {
		req := connect.NewRequest(&pingv1.PingRequest{Number: n})
		req.Header().Set("X-Tenant", "acme")
		text := ""
		res, err := client.Ping(ctx, req)
		if err == nil {
			text = res.Msg.GetText()
		}
		fmt.Printf("gRPC %d: %q %v\n", n, text, err)
	}
	for _, n := range []int64{1, 404} { // the route get: "/v1/ping/{number}"
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/ping/%d", base, n), nil)
		req.Header.Set("X-Tenant", "acme")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		var body struct{ Text, Message string }
		_ = json.NewDecoder(res.Body).Decode(&body)
		_ = res.Body.Close()
		fmt.Printf("REST %d: %d %q %q\n", n, res.StatusCode, body.Text, body.Message)
	}
	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	lines := bufio.NewScanner(&logs)
	for lines.Scan() {
		var line struct{ Msg, Protocol, Code string }
		if json.Unmarshal(lines.Bytes(), &line) == nil && line.Msg == "rpc" {
			fmt.Println("log:", line.Protocol, line.Code)
		}
	}
	// Output:
	// gRPC 1: "acme" <nil>
	// gRPC 404: "" not_found: unknown sku: 404
	// REST 1: 200 "acme" ""
	// REST 404: 404 "" "unknown sku: 404"
	// clean shutdown: true
	// log: grpc ok
	// log: grpc not_found
	// log: rest ok
	// log: rest not_found
}
