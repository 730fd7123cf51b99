package kit_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// deadlineOf calls Ping with ctx and returns the deadline the handler saw.
func deadlineOf(t *testing.T, client interface {
	Ping(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error)
}, ctx context.Context) (time.Time, bool) {
	t.Helper()
	res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	h := res.Header().Get("Deadline")
	if h == "" {
		return time.Time{}, false
	}
	d, err := time.Parse(time.RFC3339Nano, h)
	if err != nil {
		t.Fatal(err)
	}
	return d, true
}

func TestServerSideDeadlines(t *testing.T) {
	t.Parallel()
	const callTimeout, maxCallTimeout = 40 * time.Second, 90 * time.Second
	srv := newPingServer(t, kit.Config{CallTimeout: callTimeout, MaxCallTimeout: maxCallTimeout}, nil)
	client := newPingClient(srv, srv.HTTP2Client(), connect.WithGRPC())

	t.Run("call without a deadline gets the default", func(t *testing.T) {
		t.Parallel()
		before := time.Now()
		d, ok := deadlineOf(t, client, context.Background())
		if !ok || d.Before(before.Add(callTimeout-time.Second)) || d.After(time.Now().Add(callTimeout)) {
			t.Errorf("deadline %v (set: %v), want about now+%s", d, ok, callTimeout)
		}
	})
	t.Run("caller's shorter deadline is kept", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		want, _ := ctx.Deadline()
		d, ok := deadlineOf(t, client, ctx)
		if !ok || d.After(want.Add(time.Second)) || d.Before(want.Add(-5*time.Second)) {
			t.Errorf("deadline %v, want about %v", d, want)
		}
	})
	t.Run("caller's longer deadline is capped", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		d, ok := deadlineOf(t, client, ctx)
		if !ok || d.After(time.Now().Add(maxCallTimeout)) {
			t.Errorf("deadline %v, want at most now+%s", d, maxCallTimeout)
		}
	})
}

func TestCORS(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{"https://app.example.com"}}, nil)

	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+pingPath, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-grpc-web,x-user-agent")
		res, err := srv.HTTP1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := preflight("https://app.example.com")
	if res.StatusCode/100 != 2 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("allowed preflight: %d, allow-origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	if res = preflight("https://evil.example.com"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin allowed: %q", res.Header.Get("Access-Control-Allow-Origin"))
	}

	// A gRPC-Web error exposes its status headers, or a browser loses the code.
	client := newPingClient(srv, srv.HTTP1Client(), connect.WithGRPCWeb(),
		connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Origin", "https://app.example.com")
				return next(ctx, req)
			}
		})))
	_, err := client.Fail(context.Background(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)}))
	var ce *connect.Error
	if !asConnectError(err, &ce) || ce.Code() != connect.CodeNotFound {
		t.Fatalf("Fail = %v, want NotFound", err)
	}
	exposed := ce.Meta().Get("Access-Control-Expose-Headers")
	for _, h := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
		if !containsFold(exposed, h) {
			t.Errorf("Access-Control-Expose-Headers %q lacks %s", exposed, h)
		}
	}
}

// TestCORSOwnHeaders checks that a page may send the headers an operator
// allows (KIT_CORS_ALLOWED_HEADERS) and read those exposed
// (KIT_CORS_EXPOSED_HEADERS), on top of the protocols' own: a browser sends
// a call only if its preflight allows every header the call carries, so
// without them a page could send no metadata of its own (an API key, a
// tenant) at all.
func TestCORSOwnHeaders(t *testing.T) {
	t.Parallel()
	const origin = "https://app.example.com"
	// preflight asks as Chromium does for a Connect call from
	// @connectrpc/connect-web with a header of the page's own: the names
	// lowercased, sorted, comma-separated.
	preflight := func(t *testing.T, srv interface {
		HTTP1Client() *http.Client
	}, url, headers string) http.Header {
		t.Helper()
		return preflightHeaders(t, srv.HTTP1Client(), url, origin, headers)
	}
	const withKey = "connect-protocol-version,content-type,x-api-key"

	tests := []struct {
		name    string
		allowed []string
		headers string
		want    bool
	}{
		{name: "protocol headers only", headers: "connect-protocol-version,connect-timeout-ms,content-type", want: true},
		// What OpenTelemetry's browser instrumentation adds, all of which
		// the server's propagator reads.
		{name: "trace context and baggage", headers: "baggage,content-type,traceparent,tracestate", want: true},
		{name: "own header not allowed", headers: withKey, want: false},
		{name: "own header allowed", allowed: []string{"X-Api-Key"}, headers: withKey, want: true},
		{name: "any header allowed", allowed: []string{"*"}, headers: withKey + ",x-tenant", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{origin}, CORSAllowedHeaders: tc.allowed}, nil)
			h := preflight(t, srv, srv.URL, tc.headers)
			if got := h.Get("Access-Control-Allow-Origin") == origin && h.Get("Access-Control-Allow-Headers") != ""; got != tc.want {
				t.Errorf("preflight for %q allowed = %v, want %v (headers %v)", tc.headers, got, tc.want, h)
			}
		})
	}

	// A page whose session is a cookie calls with fetch's credentials
	// "include": the browser hides the response unless both the preflight
	// and the response allow credentials.
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("credentials allowed %v", allow), func(t *testing.T) {
			t.Parallel()
			srv := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{origin}, CORSAllowCredentials: allow}, nil)
			h := preflight(t, srv, srv.URL, "connect-protocol-version,content-type")
			req, _ := http.NewRequest(http.MethodGet, srv.URL+pingPath+"?connect=v1&encoding=json&message=%7B%7D", nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Cookie", "session=s")
			res, err := srv.HTTP1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			for what, got := range map[string]string{
				"preflight": h.Get("Access-Control-Allow-Credentials"),
				"response":  res.Header.Get("Access-Control-Allow-Credentials"),
			} {
				if (got == "true") != allow {
					t.Errorf("%s: Access-Control-Allow-Credentials %q, want it only if allowed (%v)", what, got, allow)
				}
			}
		})
	}

	t.Run("own response header exposed", func(t *testing.T) {
		t.Parallel()
		srv := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{origin}, CORSExposedHeaders: []string{"Deadline"}}, nil)
		res := pageCall(t, srv, origin)
		exposed := res.Header.Get("Access-Control-Expose-Headers")
		for _, h := range []string{"Deadline", "Grpc-Status", "X-Request-Id"} {
			if !containsFold(exposed, h) {
				t.Errorf("Access-Control-Expose-Headers %q lacks %s", exposed, h)
			}
		}
		if res.Header.Get("Deadline") == "" {
			t.Errorf("the handler's Deadline header is missing: %v", res.Header)
		}
	})
}

// pageCall makes the Ping call that a page of origin makes, in JSON over
// HTTP/1.1, and returns its response, body closed.
func pageCall(t *testing.T, srv *kittest.Server, origin string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+pingPath, strings.NewReader(`{"number": 1}`))
	req.Header.Set("Origin", origin)
	req.Header.Set("Content-Type", "application/json")
	res, err := srv.HTTP1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// TestCORSPreflightHeaderListForms: a preflight whose
// Access-Control-Request-Headers is not in the browsers' form (lower-case,
// sorted, one line; as curl users and some proxies send it) is answered as
// its browser form would be, where rs/cors answered it without any
// Access-Control-Allow-* header; a name not allowed is still refused.
func TestCORSPreflightHeaderListForms(t *testing.T) {
	t.Parallel()
	const origin = "http://localhost:3000"
	srv := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{origin}}, nil)
	tests := []struct {
		name  string
		lines []string
		want  string // Access-Control-Allow-Headers; "" for refused
	}{
		{name: "sorted", lines: []string{"connect-protocol-version,content-type"}, want: "connect-protocol-version,content-type"},
		{name: "unsorted", lines: []string{"content-type,connect-protocol-version"}, want: "connect-protocol-version,content-type"},
		{name: "upper case", lines: []string{"Connect-Protocol-Version,Content-Type"}, want: "connect-protocol-version,content-type"},
		{name: "spaces", lines: []string{"content-type ,   connect-protocol-version"}, want: "connect-protocol-version,content-type"},
		{name: "repeated", lines: []string{"content-type,content-type,connect-protocol-version"}, want: "connect-protocol-version,content-type"},
		{name: "two lines out of order", lines: []string{"content-type", "connect-protocol-version"}, want: "connect-protocol-version,content-type"},
		{name: "unsorted, one not allowed", lines: []string{"x-api-key,content-type"}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodOptions, srv.URL+pingPath, nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header["Access-Control-Request-Headers"] = tc.lines
			res, err := srv.HTTP1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			allowOrigin := res.Header.Get("Access-Control-Allow-Origin")
			if got := res.Header.Get("Access-Control-Allow-Headers"); got != tc.want || (allowOrigin == origin) != (tc.want != "") {
				t.Errorf("preflight with %q: Access-Control-Allow-Headers %q, Access-Control-Allow-Origin %q; want %q", tc.lines, got, allowOrigin, tc.want)
			}
		})
	}
}

// TestCORSPreflightNonASCIIHeaderName: a preflight listing a name that is
// not ASCII is refused even where Unicode lower-casing makes it an allowed
// name ("x-api-\u212aey", KELVIN SIGN, lower-cases to "x-api-key"): no
// browser sends such a name, and the request that follows would carry the
// name as listed, not the one allowed.
func TestCORSPreflightNonASCIIHeaderName(t *testing.T) {
	t.Parallel()
	const origin = "http://localhost:3000"
	srv := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{origin}, CORSAllowedHeaders: []string{"X-Api-Key"}}, nil)
	for _, list := range []string{"x-api-key", "x-api-\u212aey"} {
		got := preflightHeaders(t, srv.HTTP1Client(), srv.URL, origin, list).Get("Access-Control-Allow-Headers")
		if want := map[bool]string{true: "x-api-key", false: ""}[list == "x-api-key"]; got != want {
			t.Errorf("preflight with %q: Access-Control-Allow-Headers %q, want %q", list, got, want)
		}
	}
}

// TestCORSPreflightLongHeaderListAsSent: a preflight's
// Access-Control-Request-Headers longer than kit normalises (4 KiB over all
// its lines) reaches rs/cors as sent, which checks it in one pass without
// allocating: an unsorted one is refused, where kit split, sorted and
// joined it on every such preflight (up to KIT_MAX_HEADER_BYTES of names);
// one in the browsers' form is accepted as before.
func TestCORSPreflightLongHeaderListAsSent(t *testing.T) {
	t.Parallel()
	const origin = "http://localhost:3000"
	srv := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{origin}}, nil)
	unsorted := strings.Repeat("content-type,connect-protocol-version,", 4<<10/38+1)
	tests := []struct {
		name string
		list string
		want string
	}{
		{name: "unsorted", list: unsorted, want: ""},
		{name: "browser form", list: "connect-protocol-version,content-type", want: "connect-protocol-version,content-type"},
		{name: "unsorted, short", list: "content-type,connect-protocol-version", want: "connect-protocol-version,content-type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := preflightHeaders(t, srv.HTTP1Client(), srv.URL, origin, tc.list).Get("Access-Control-Allow-Headers")
			if got != tc.want {
				t.Errorf("preflight with a %d-byte list: Access-Control-Allow-Headers %.60q, want %.60q", len(tc.list), got, tc.want)
			}
		})
	}
}

// preflightHeaders sends a CORS preflight for a POST to pingPath at url from
// origin, listing lines as its Access-Control-Request-Headers (each a header
// line), and returns the response's header.
func preflightHeaders(tb testing.TB, client *http.Client, url, origin string, lines ...string) http.Header {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodOptions, url+pingPath, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header["Access-Control-Request-Headers"] = lines
	res, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	res.Body.Close()
	return res.Header
}
