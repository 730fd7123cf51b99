package kit_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// A body sent to a route that takes none is ignored, as grpc-gateway and
// Kratos ignore it, also where another route of the same HTTP method takes
// a body (here `post: "/v1/ping" body: "*"` beside `post:
// "/v1/fail/{code}"`), and a client that sends `{}` with every POST
// reaches its method, whose fields come from the path alone: vanguard
// refused it 400 ("this route takes no request body"). The method runs
// once: one rpc line, no rejected call; a route that takes a body still
// gets it.
func TestRESTBodyOfARouteThatTakesNoneIsIgnored(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			s := newPingServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			client := s.HTTP1Client()
			if proto == "h2c" {
				client = s.HTTP2Client()
			}
			for _, body := range []string{`{}`, `{"code":13}`, `{"code":`} {
				resp, got := restCall(t, client, http.MethodPost, s.URL+"/v1/fail/5", body, http.Header{"X-Request-Id": {"no-body-1"}})
				var st struct {
					Code int `json:"code"`
				}
				if err := json.Unmarshal([]byte(got), &st); err != nil || resp.StatusCode != http.StatusNotFound || st.Code != 5 {
					t.Errorf("POST /v1/fail/5 with body %s = %d %s, want 404 and code 5 (NotFound, the path's)", body, resp.StatusCode, got)
				}
				if ids := resp.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] != "no-body-1" {
					t.Errorf("POST /v1/fail/5 with body %s: X-Request-Id %q, want the client's once", body, ids)
				}
				if ct := resp.Header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
					t.Errorf("POST /v1/fail/5 with body %s: Content-Type %q, want application/json once", body, ct)
				}
			}
			resp, got := restCall(t, client, http.MethodPost, s.URL+"/v1/ping", `{"number":"7"}`, nil)
			var ping struct {
				Number string `json:"number"`
			}
			if err := json.Unmarshal([]byte(got), &ping); err != nil || resp.StatusCode != http.StatusOK || ping.Number != "7" {
				t.Errorf("POST /v1/ping = %d %s, want the body's number", resp.StatusCode, got)
			}
			if lines := logLines(t, &logs, "rpc rejected before the interceptor chain"); len(lines) != 0 {
				t.Errorf("rejected calls logged: %v", lines)
			}
			var fails int
			for _, line := range logLines(t, &logs, "rpc") {
				if line["procedure"] == "/connectkit.ping.v1.PingService/Fail" {
					fails++
					if line["code"] != "not_found" {
						t.Errorf("Fail's line: %v, want not_found", line)
					}
				}
			}
			if fails != 3 {
				t.Errorf("%d rpc lines of Fail, want 3", fails)
			}
			if n := counterValue(t, s.Registry(), "kit_rejected_calls_total", map[string]string{}); n != 0 {
				t.Errorf("kit_rejected_calls_total = %v, want 0", n)
			}
		})
	}
}

// BenchmarkRESTPostBody is a POST with a body to a route that takes it,
// `post: "/v1/ping" body: "*"`, beside `post: "/v1/fail/{code}"`, which
// takes none: what such a call pays for the header kit keeps in case its
// route turns out to take no body (see TestRESTBodyOfARouteThatTakesNoneIsIgnored).
func BenchmarkRESTPostBody(b *testing.B) {
	level := new(slog.LevelVar)
	s := kittest.NewServer(b, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	}, kit.WithLogger(kit.NewLogger(dropWriter{}, "json", level)), kit.WithLogLevel(level))
	client := s.HTTP1Client()
	target := s.URL + "/v1/ping"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(target, "application/json", strings.NewReader(`{"number":"7"}`))
		drainOK(b, resp, err, target)
	}
}
