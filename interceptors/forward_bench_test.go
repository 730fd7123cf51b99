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

// clientSpecRequest is a client's unary request to procedure.
type clientSpecRequest struct{ specRequest }

func (r *clientSpecRequest) Spec() connect.Spec {
	s := r.specRequest.Spec()
	s.IsClient = true
	return s
}

// BenchmarkForwardHeaders measures what ForwardHeaders("x-md-global-*",
// "x-tenant") adds to a served unary call in memory, whose request holds
// the headers of a grpc-go call (seven) and none, or two, to forward, and
// to a call its handler makes, against the bare call ("none").
func BenchmarkForwardHeaders(b *testing.B) {
	fwd, err := interceptors.ForwardHeaders("x-md-global-*", "x-tenant")
	if err != nil {
		b.Fatal(err)
	}
	grpcHeaders := func() http.Header {
		return http.Header{
			"Content-Type": {"application/grpc"}, "Te": {"trailers"}, "User-Agent": {"grpc-go/1.85.0"},
			"Grpc-Accept-Encoding": {"gzip"}, "Grpc-Timeout": {"29999m"},
			"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "X-Request-Id": {"abc"},
		}
	}
	var out connect.UnaryFunc = func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { return nil, nil }
	outgoing := fwd.WrapUnary(out)
	// served calls make one call, with a request of their own.
	served := func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		req := &clientSpecRequest{specRequest{connect.NewRequest(&pingv1.PingRequest{}), pingv1connect.PingServicePingProcedure}}
		req.Header()["Content-Type"] = []string{"application/proto"}
		return outgoing(ctx, req)
	}
	for _, tc := range []struct {
		name       string
		forward    bool
		forwarding http.Header
	}{
		{name: "none"},
		{name: "nothing to forward", forward: true},
		{name: "two to forward", forward: true, forwarding: http.Header{"X-Md-Global-Tenant": {"acme"}, "X-Tenant": {"t1"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			call := connect.UnaryFunc(served)
			if tc.forward {
				call = fwd.WrapUnary(served)
			}
			req := &specRequest{connect.NewRequest(&pingv1.PingRequest{}), pingv1connect.PingServicePingProcedure}
			h := req.Header()
			for k, v := range grpcHeaders() {
				h[k] = v
			}
			for k, v := range tc.forwarding {
				h[k] = v
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, _ = call(ctx, req)
			}
		})
	}
}
