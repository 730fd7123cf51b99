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

// A handler's plain error keeps, for the REST client, the headers it set
// (Retry-After, WWW-Authenticate) and the start of its text in the
// message (http.Error's "token expired": the message named only the
// status and the Content-Type), cut at 512 bytes; an HTML page's is left
// out. A JSON error that is not Connect's ({"error":"…"}) is replaced as
// plain text is: vanguard read it as a Connect error without a code and
// answered 200 {"code":0}. An informational status first (103 Early Hints) leaves the error
// that follows it an error: it went through as the answer, and vanguard
// read the plain text as Connect's error JSON, 500 Internal.
func TestRESTHandlerPlainErrorText(t *testing.T) {
	t.Parallel()
	sd, err := watchService()
	if err != nil {
		t.Fatal(err)
	}
	long := "a" + strings.Repeat("é", 400) // 801 bytes: cut inside the 256th é
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Header.Get("X-Case") {
			case "429":
				w.Header().Set("Retry-After", "30")
				http.Error(w, "slow down:\n3 calls a second", http.StatusTooManyRequests)
			case "401":
				w.Header().Set("WWW-Authenticate", `Bearer realm="x"`)
				http.Error(w, "token expired", http.StatusUnauthorized)
			case "103":
				w.Header().Set("Link", "</a.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				http.Error(w, "no such thing", http.StatusNotFound)
			case "json":
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				_, _ = w.Write([]byte(`{"error":"denied: no scope"}`))
			case "html":
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = w.Write([]byte("<html><body>bad gateway</body></html>"))
			default:
				http.Error(w, long, http.StatusForbidden)
			}
		})
		srv.Mount("/connectkit.ping.v1.PingService/", plain)
		srv.Mount("/"+string(sd.FullName())+"/", plain)
	})
	for _, tc := range []struct {
		name, method, path, xcase string
		status, code              int
		header, value, text       string
	}{
		{name: "429", method: http.MethodGet, path: "/v1/ping/7", xcase: "429", status: 429, code: 8, header: "Retry-After", value: "30",
			text: "without a Connect error: slow down: 3 calls a second"},
		{name: "401", method: http.MethodGet, path: "/v1/ping/7", xcase: "401", status: 401, code: 16, header: "Www-Authenticate", value: `Bearer realm="x"`,
			text: "without a Connect error: token expired"},
		{name: "103, then 404", method: http.MethodGet, path: "/v1/ping/7", xcase: "103", status: 404, code: 5, header: "Link", value: "</a.css>; rel=preload",
			text: "without a Connect error: no such thing"},
		{name: "JSON, not Connect's", method: http.MethodGet, path: "/v1/ping/7", xcase: "json", status: 403, code: 7,
			text: `without a Connect error: {"error":"denied: no scope"}`},
		{name: "HTML", method: http.MethodGet, path: "/v1/ping/7", xcase: "html", status: 503, code: 14, // Unavailable's status
			text: `without a Connect error (Content-Type "text/html")`},
		{name: "cut", method: http.MethodGet, path: "/v1/ping/7", status: 403, code: 7,
			text: "without a Connect error: a" + strings.Repeat("é", 255) + "..."},
		{name: "stream 401", method: http.MethodPost, path: "/v1/watches/a", xcase: "401", status: 401, code: 16, header: "Www-Authenticate", value: `Bearer realm="x"`,
			text: "without a Connect error: token expired"},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, tc.method, s.URL+tc.path, "", http.Header{"X-Case": {tc.xcase}})
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if resp.StatusCode != tc.status || json.Unmarshal([]byte(body), &st) != nil || st.Code != tc.code || !strings.HasSuffix(st.Message, tc.text) ||
				tc.header != "" && resp.Header.Get(tc.header) != tc.value {
				t.Errorf("%s: %s %s over %s = %d %s %v, want %d, code %d, a message ending %q and %s: %s", tc.name, tc.method, tc.path, resp.Proto,
					resp.StatusCode, body, resp.Header, tc.status, tc.code, tc.text, tc.header, tc.value)
			}
		}
	}
}
