package interceptors_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// announced prints its name when a unary call reaches it, then runs the
// interceptor it names.
type announced struct {
	name string
	connect.Interceptor
}

func (a announced) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	next = a.Interceptor.WrapUnary(next)
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		fmt.Println("→", a.name)
		return next(ctx, req)
	}
}

// This example shows the order in which a call goes through the default
// server chain, followed by an interceptor of yours.
func ExampleDefault() {
	logger := slog.New(slog.DiscardHandler)
	chain, err := interceptors.Default(logger, prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	names := map[connect.Interceptor]string{
		chain.Tracing: "tracing", chain.RequestID: "request id", chain.Logging: "logging",
		chain.Metrics: "metrics", chain.Recovery: "recovery", chain.Validation: "validation",
	}
	var server []connect.Interceptor
	for _, i := range chain.Server() {
		server = append(server, announced{names[i], i})
	}
	yours := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc { return next })
	server = append(server, announced{"your interceptor", yours})

	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(server...)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)
	if _, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		panic(err)
	}
	// Output:
	// → tracing
	// → request id
	// → logging
	// → metrics
	// → recovery
	// → validation
	// → your interceptor
}

// This example shows what the default chain makes of a panic in a handler:
// an Internal error for that call only, one error line with the panic and
// its stack, and a count in grpc_req_panics_recovered_total.
func ExampleRecovery() {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	chain, err := interceptors.Default(logger, reg)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(chain.Server()...)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)
	_, err = client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Text: "panic"}))
	fmt.Println("error:", err)
	_, err = client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
	fmt.Println("next call's error:", err)

	lines := bufio.NewScanner(&logs)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var line struct {
			Level, Code, Panic string
			Stack              string
		}
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
			panic(err)
		}
		fmt.Printf("log: level=%s code=%s panic=%q with stack: %t\n", line.Level, line.Code, line.Panic, line.Stack != "")
	}
	n, err := testutil.GatherAndCount(reg, "grpc_req_panics_recovered_total")
	fmt.Println("panic series:", n, err)
	// Output:
	// error: internal: internal error
	// next call's error: <nil>
	// log: level=ERROR code=internal panic="boom" with stack: true
	// log: level=INFO code=ok panic="" with stack: false
	// panic series: 1 <nil>
}
