package kit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// downPing is a PingService whose Ping (idempotent) answers Unavailable.
type downPing struct{ pingServer }

func (*downPing) Ping(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return nil, connect.NewError(connect.CodeUnavailable, errors.New("down"))
}

// With Config.ClientRetry on, in every protocol, the clients of
// ClientOptions retry an idempotent call that fails with Unavailable, inside
// the client chain's Metrics and outside the breaker: with a breaker that
// trips on 2 failures, the call is counted once by the client chain, its
// first two attempts reach the server, and the third is refused by the
// breaker and not retried. Without it (the default), one attempt.
func TestClientRetry(t *testing.T) {
	t.Parallel()
	for name, protoOpts := range clientProtocols {
		for _, on := range []bool{true, false} {
			t.Run(name+"/"+map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
				t.Parallel()
				srv := kittest.NewServer(t, kit.Config{
					ClientRetry:   kit.ClientRetryConfig{Enabled: on},
					ClientBreaker: kit.ClientBreakerConfig{Enabled: true, ConsecutiveFailures: 2, OpenTimeout: time.Hour},
				}, func(srv *kit.Server) {
					srv.Mount(pingv1connect.NewPingServiceHandler(&downPing{}, srv.HandlerOptions()...))
				})
				client := newPingClient(srv, srv.HTTP2Client(), append(srv.ClientOptions(), protoOpts...)...)
				_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
				if connect.CodeOf(err) != connect.CodeUnavailable || errors.Is(err, interceptors.ErrBreakerOpen) != on {
					t.Fatalf("ping: %v, want Unavailable, refused by the breaker: %t", err, on)
				}
				sent, retries := 1.0, 0.0
				if on {
					sent, retries = 2, 2
				}
				labels := map[string]string{"grpc_method": "Ping", "grpc_code": "Unavailable"}
				if got := counterValue(t, srv.Registry(), "grpc_server_handled_total", labels); got != sent {
					t.Errorf("server handled %v calls, want %v", got, sent)
				}
				if got := counterValue(t, srv.Registry(), "grpc_client_handled_total", labels); got != 1 {
					t.Errorf("grpc_client_handled_total = %v, want 1: the call, once", got)
				}
				if got := counterValue(t, srv.Registry(), "rpc_client_retries_total",
					map[string]string{"procedure": pingv1connect.PingServicePingProcedure}); got != retries {
					t.Errorf("rpc_client_retries_total = %v, want %v", got, retries)
				}
			})
		}
	}
}

// With ResourceExhausted among the codes retried, a call that kit's
// RateLimit refuses is made again after its Retry-After, and succeeds.
func TestClientRetryRateLimit(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{RateLimit: 2, RateLimitBurst: 1,
		ClientRetry: kit.ClientRetryConfig{Enabled: true, Codes: []connect.Code{connect.CodeResourceExhausted}}}, nil)
	client := newPingClient(srv, srv.HTTP2Client(), srv.ClientOptions()...)
	for i := range 2 {
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if got := counterValue(t, srv.Registry(), "grpc_server_handled_total",
		map[string]string{"grpc_method": "Ping", "grpc_code": "ResourceExhausted"}); got != 1 {
		t.Errorf("%v calls refused, want 1", got)
	}
}

// ClientRetry.Codes empty but not nil (a config file's "codes: []") keeps
// the default, Unavailable, as an unset one does and as the settings show.
func TestClientRetryEmptyCodes(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{ClientRetry: kit.ClientRetryConfig{Enabled: true, MaxAttempts: 2,
		InitialBackoff: time.Millisecond, Codes: []connect.Code{}}}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&downPing{}, srv.HandlerOptions()...))
	})
	client := newPingClient(srv, srv.HTTP2Client(), srv.ClientOptions()...)
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("ping: %v, want Unavailable", err)
	}
	if got := counterValue(t, srv.Registry(), "grpc_server_handled_total",
		map[string]string{"grpc_method": "Ping", "grpc_code": "Unavailable"}); got != 2 {
		t.Errorf("server handled %v calls, want 2: the call and its retry", got)
	}
}
