package interceptors_test

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// BenchmarkCircuitBreaker measures what a closed breaker adds to a client's
// unary call (see benchClientInterceptor).
func BenchmarkCircuitBreaker(b *testing.B) {
	breaker, err := interceptors.CircuitBreaker(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchClientInterceptor(b, "breaker", breaker)
}

// benchClientInterceptor measures what interceptor adds to a client's unary
// call that succeeds: the call ends in an interceptor that answers it
// without the network, so that connect's client and interceptor are all
// that runs. Its sub-benchmarks are none, without interceptor, and name.
func benchClientInterceptor(b *testing.B, name string, interceptor connect.Interceptor) {
	b.Helper()
	answer := connect.UnaryInterceptorFunc(func(connect.UnaryFunc) connect.UnaryFunc {
		resp := connect.NewResponse(&pingv1.PingResponse{})
		return func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { return resp, nil }
	})
	for _, bc := range []struct {
		name  string
		chain []connect.Interceptor
	}{
		{name: "none", chain: []connect.Interceptor{answer}},
		{name: name, chain: []connect.Interceptor{interceptor, answer}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			client := pingv1connect.NewPingServiceClient(http.DefaultClient, "http://127.0.0.1:1", connect.WithInterceptors(bc.chain...))
			req := &pingv1.PingRequest{}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Ping(context.Background(), connect.NewRequest(req)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
