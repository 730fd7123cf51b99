package kit_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// A call that comes in over a REST route is logged and counted under the
// protocol rest, as kit_rejected_calls_total counts a REST call it
// refuses, where vanguard's Connect call of the method made it connect;
// the calls of connect clients keep their protocol: a Connect GET too,
// whose query holds its message, and a Connect call whose query names the
// parameter kit marks REST calls with.
func TestRESTCallProtocol(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	s := newPingServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	ctx := context.Background()
	// Each REST call over HTTP/1.1 and h2c: a GET with a query, a POST
	// with a body, a POST answered with an error.
	for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
		for _, call := range []struct{ method, path, body string }{
			{http.MethodGet, "/v1/ping/7?text=a", ""},
			{http.MethodPost, "/v1/ping", `{"number":"7"}`},
			{http.MethodPost, "/v1/fail/5", ""},
		} {
			if resp, got := restCall(t, client, call.method, s.URL+call.path, call.body, nil); resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
				t.Fatalf("%s %s = %d %s", call.method, call.path, resp.StatusCode, got)
			}
		}
	}
	// Two calls of each connect protocol, a Connect GET among them.
	for name, opts := range map[string][]connect.ClientOption{
		"grpc": {connect.WithGRPC()}, "grpcweb": {connect.WithGRPCWeb()},
		"connect": nil, "connect GET": {connect.WithHTTPGet()},
	} {
		client := newPingClient(s, s.HTTP2Client(), opts...)
		if _, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := client.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: 5})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("%s: Fail: %v, want NotFound", name, err)
		}
	}
	// A Connect call that names the mark's parameter itself.
	resp, got := restCall(t, s.HTTP1Client(), http.MethodPost, s.URL+"/connectkit.ping.v1.PingService/Ping?kit-rest-call=x",
		`{"number":"1"}`, http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Connect call with ?kit-rest-call = %d %s", resp.StatusCode, got)
	}

	want := map[string]int{"rest": 6, "connect": 5, "grpc": 2, "grpcweb": 2}
	lines := map[string]int{}
	for _, line := range logLines(t, &logs, "rpc") {
		lines[line["protocol"].(string)]++
	}
	for protocol, n := range want {
		if lines[protocol] != n {
			t.Errorf("%d rpc lines of protocol %s, want %d (all: %v)", lines[protocol], protocol, n, lines)
		}
		if got := counterValue(t, s.Registry(), "grpc_server_started_by_protocol_total", map[string]string{"protocol": protocol}); got != float64(n) {
			t.Errorf("grpc_server_started_by_protocol_total{protocol=%q} = %v, want %d", protocol, got, n)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("rpc lines by protocol: %v, want %v", lines, want)
	}
}
