package kit_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// idSettingPing's Ping sets an X-Request-Id of its own on its response.
type idSettingPing struct{ pingServer }

func (p *idSettingPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	res, err := p.pingServer.Ping(ctx, req)
	if err == nil {
		res.Header().Set(interceptors.RequestIDHeader, "the-handler's")
	}
	return res, err
}

// TestRequestIDEchoedOnce checks that every protocol's response carries the
// call's request id exactly once: on success, on error, and when the
// handler set an id of its own on its response.
func TestRequestIDEchoedOnce(t *testing.T) {
	t.Parallel()
	plain := newPingServer(t, kit.Config{}, nil)
	setting := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&idSettingPing{}, srv.HandlerOptions()...))
	})
	for _, s := range []struct {
		name string
		srv  *kittest.Server
	}{{"plain", plain}, {"handler sets one", setting}} {
		for _, p := range s.srv.Protocols() {
			t.Run(s.name+"/"+p.Name, func(t *testing.T) {
				t.Parallel()
				client := newPingClient(s.srv, p.Client, p.Options...)
				req := connect.NewRequest(&pingv1.PingRequest{Number: 1})
				req.Header().Set(interceptors.RequestIDHeader, "call-"+p.Name)
				res, err := client.Ping(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Header().Values(interceptors.RequestIDHeader); !slices.Equal(got, []string{"call-" + p.Name}) {
					t.Errorf("Ping's X-Request-Id: %q; want the call's, once", got)
				}
				fail := connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeAborted)})
				fail.Header().Set(interceptors.RequestIDHeader, "fail-"+p.Name)
				_, err = client.Fail(t.Context(), fail)
				var ce *connect.Error
				if !errors.As(err, &ce) {
					t.Fatalf("Fail = %v; want a connect error", err)
				}
				if got := ce.Meta().Values(interceptors.RequestIDHeader); !slices.Equal(got, []string{"fail-" + p.Name}) {
					t.Errorf("Fail's X-Request-Id: %q; want the call's, once", got)
				}
			})
		}
	}
}
