package kit_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// With Config.ClientBreaker on, the clients of ClientOptions stop calling a
// procedure that keeps failing with Unavailable, in every protocol: the
// calls after the threshold fail at once without reaching the server, are
// logged and counted by the client chain like other failures, and the
// breaker's log line and series land on the server's logger and registry.
// Without it (the default), every call is sent.
func TestClientBreaker(t *testing.T) {
	t.Parallel()
	for name, protoOpts := range clientProtocols {
		for _, on := range []bool{true, false} {
			t.Run(name+"/"+map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
				t.Parallel()
				var logs syncBuffer
				srv := newPingServer(t, kit.Config{ClientBreaker: kit.ClientBreakerConfig{Enabled: on}}, nil,
					kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
				client := newPingClient(srv, srv.HTTP2Client(), append(srv.ClientOptions(), protoOpts...)...)
				const calls = 2 * interceptors.DefaultBreakerConsecutiveFailures
				refused := 0
				for range calls {
					_, err := client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeUnavailable)}))
					if connect.CodeOf(err) != connect.CodeUnavailable {
						t.Fatalf("%v, want Unavailable", err)
					}
					if errors.Is(err, interceptors.ErrBreakerOpen) {
						refused++
					}
				}
				sent := calls
				if on {
					sent = interceptors.DefaultBreakerConsecutiveFailures
				}
				if refused != calls-sent {
					t.Errorf("%d calls refused, want %d", refused, calls-sent)
				}
				labels := map[string]string{"grpc_method": "Fail", "grpc_code": "Unavailable"}
				if got := counterValue(t, srv.Registry(), "grpc_server_handled_total", labels); got != float64(sent) {
					t.Errorf("server handled %v calls, want %d", got, sent)
				}
				if got := counterValue(t, srv.Registry(), "grpc_client_handled_total", labels); got != calls {
					t.Errorf("grpc_client_handled_total = %v, want %d: every call, refused or not", got, calls)
				}
				procedure := pingv1connect.PingServiceFailProcedure
				if got := counterValue(t, srv.Registry(), "rpc_client_circuit_breaker_refused_total", map[string]string{"procedure": procedure}); got != float64(calls-sent) {
					t.Errorf("rpc_client_circuit_breaker_refused_total = %v, want %d", got, calls-sent)
				}
				if state := counterValue(t, srv.Registry(), "rpc_client_circuit_breaker_state", map[string]string{"procedure": procedure}); on && state != 2 {
					t.Errorf("rpc_client_circuit_breaker_state = %v, want 2 (open)", state)
				}
				var changes []map[string]any
				for _, line := range logLines(t, &logs, "circuit breaker state changed") {
					if line["procedure"] == procedure {
						changes = append(changes, line)
					}
				}
				if on && (len(changes) != 1 || changes[0]["level"] != "WARN" || changes[0]["to"] != "open" ||
					!strings.HasPrefix(srv.URL, "http://"+changes[0]["peer"].(string))) {
					t.Errorf("state change lines %v, want one at warn, to open, with the server's address", changes)
				}
				if !on && len(changes) != 0 {
					t.Errorf("state change lines %v without a breaker", changes)
				}
			})
		}
	}
}

// The breaker's settings reach it: a breaker tripped by 2 failures in a row.
func TestClientBreakerSettings(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{ClientBreaker: kit.ClientBreakerConfig{Enabled: true, ConsecutiveFailures: 2, OpenTimeout: time.Hour}}, nil)
	client := newPingClient(srv, srv.HTTP2Client(), srv.ClientOptions()...)
	var errs []error
	for range 3 {
		_, err := client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeInternal)}))
		errs = append(errs, err)
	}
	if errors.Is(errs[1], interceptors.ErrBreakerOpen) || !errors.Is(errs[2], interceptors.ErrBreakerOpen) {
		t.Errorf("errors %v: want the third call refused", errs)
	}
}
