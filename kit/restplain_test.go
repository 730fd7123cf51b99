package kit_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// A handler mounted for a service that answers a REST call's procedure
// with an HTTP error of its own, not a Connect error (a mux that serves
// some of the procedures: http.NotFound's "404 page not found"; a
// middleware's plain-text 403), gives the REST client that status, a 404
// a 404, with a google.rpc.Status JSON body naming it: vanguard read the
// text as Connect's error JSON and answered 500 Internal ("invalid
// character 'p' after top-level value"), a stream's 404 501
// Unimplemented.
func TestRESTHandlerPlainError(t *testing.T) {
	t.Parallel()
	sd, err := watchService()
	if err != nil {
		t.Fatal(err)
	}
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		svc := &pingServer{}
		mux := http.NewServeMux() // Ping alone: Fail is the mux's 404
		ping := connect.NewUnaryHandler(pingv1connect.PingServicePingProcedure, svc.Ping, srv.HandlerOptions()...)
		mux.Handle(pingv1connect.PingServicePingProcedure, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Deny") != "" {
				http.Error(w, "denied", http.StatusForbidden)
				return
			}
			ping.ServeHTTP(w, r)
		}))
		srv.Mount("/connectkit.ping.v1.PingService/", mux)
		srv.Mount("/"+string(sd.FullName())+"/", http.NewServeMux()) // no Watch, no Put
	})
	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
		status, code             int
	}{
		{name: "unary 404", method: http.MethodPost, path: "/v1/fail/5", status: http.StatusNotFound, code: 5},
		{name: "unary 403", method: http.MethodGet, path: "/v1/ping/7", header: http.Header{"X-Deny": {"1"}}, status: http.StatusForbidden, code: 7},
		{name: "unary 403, POST", method: http.MethodPost, path: "/v1/ping", body: `{"number":"7"}`, header: http.Header{"X-Deny": {"1"}}, status: http.StatusForbidden, code: 7},
		{name: "stream 404", method: http.MethodPost, path: "/v1/watches/a", status: http.StatusNotFound, code: 5},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, tc.method, s.URL+tc.path, tc.body, tc.header)
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &st) != nil ||
				st.Code != tc.code || !strings.Contains(st.Message, "answered HTTP "+strconv.Itoa(tc.status)) {
				t.Errorf("%s: %s %s over %s = %d %s %s, want %d with a google.rpc.Status of code %d", tc.name, tc.method, tc.path, resp.Proto,
					resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.code)
			}
		}
	}
	// A call the handler serves is as ever.
	if resp, body := restCall(t, s.HTTP2Client(), http.MethodGet, s.URL+"/v1/ping/7", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/ping/7 = %d %s, want 200", resp.StatusCode, body)
	}
}
