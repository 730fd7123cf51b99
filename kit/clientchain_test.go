package kit_test

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// The interceptors of WithClientInterceptors run on clients built with
// srv.ClientOptions(), after kit's client chain (which sends the request
// id), with the default chain and without it.
func TestClientInterceptorsRunOnClientOptions(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]kit.Option{
		"default chain": nil,
		"no chain":      {kit.WithoutDefaultInterceptors()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			seen := make(chan http.Header, 1)
			record := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					if !req.Spec().IsClient {
						seen <- req.Header().Clone()
					}
					return next(ctx, req)
				}
			})
			stamp := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					if req.Spec().IsClient {
						req.Header().Set("X-Tenant", "acme")
					}
					return next(ctx, req)
				}
			})
			srv := newPingServer(t, kit.Config{}, nil, append(opts, kit.WithInterceptors(record), kit.WithClientInterceptors(stamp))...)
			client := newPingClient(srv, srv.HTTP2Client(), srv.ClientOptions()...)
			if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
				t.Fatal(err)
			}
			h := <-seen
			if got := h.Get("X-Tenant"); got != "acme" {
				t.Errorf("X-Tenant = %q, want the client interceptor's", got)
			}
			if withChain := opts == nil; (h.Get("X-Request-Id") != "") != withChain {
				t.Errorf("X-Request-Id = %q; want one only from the default client chain", h.Get("X-Request-Id"))
			}
		})
	}
}
