package kit_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// restCall sends a plain net/http request to s, over HTTP/1.1 or h2c, and
// returns the response with its body read.
func restCall(t *testing.T, client *http.Client, method, url, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// The PingService's google.api.http routes are served beside its RPCs, on
// the same port, over HTTP/1.1 and h2c: path variables, query parameters
// and JSON bodies make the request; errors come back as google.rpc.Status
// JSON with the HTTP status of their code, a validation failure's as 400.
func TestRESTRoutes(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	for _, client := range []struct {
		name string
		c    *http.Client
	}{{"http1", s.HTTP1Client()}, {"h2c", s.HTTP2Client()}} {
		t.Run(client.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				name, method, path, body string
				contentType              string // of the body; "": application/json
				encoding                 string // its Content-Encoding
				status                   int
				want                     map[string]any // of the JSON response
			}{
				{name: "path variable", method: http.MethodGet, path: "/v1/ping/7", status: http.StatusOK,
					want: map[string]any{"number": "7"}},
				{name: "query parameter", method: http.MethodGet, path: "/v1/ping/7?text=hi", status: http.StatusOK,
					want: map[string]any{"number": "7", "text": "hi"}},
				{name: "unknown query parameter", method: http.MethodGet, path: "/v1/ping/7?_=1733561497&text=hi", status: http.StatusOK,
					want: map[string]any{"number": "7", "text": "hi"}},
				{name: "GET with a body", method: http.MethodGet, path: "/v1/ping/7", body: `{"number":"9","text":"ignored"}`, status: http.StatusOK,
					want: map[string]any{"number": "7", "text": ""}},
				{name: "GET with a form", method: http.MethodGet, path: "/v1/ping/7", body: "text=ignored",
					contentType: "application/x-www-form-urlencoded", status: http.StatusOK, want: map[string]any{"number": "7", "text": ""}},
				// A client that sets a type on every request: ignored, as
				// a GET's body is, over HTTP/1.1 too.
				{name: "GET without a body, with a type", method: http.MethodGet, path: "/v1/ping/7", contentType: "text/plain",
					status: http.StatusOK, want: map[string]any{"number": "7"}},
				{name: "body", method: http.MethodPost, path: "/v1/ping", body: `{"number":"3","text":"posted"}`, status: http.StatusOK,
					want: map[string]any{"number": "3", "text": "posted"}},
				{name: "JSON in UTF-8", method: http.MethodPost, path: "/v1/ping", body: `{"number":"4"}`,
					contentType: "application/json;charset=UTF-8", status: http.StatusOK, want: map[string]any{"number": "4"}},
				{name: "JSON in upper case", method: http.MethodPost, path: "/v1/ping", body: `{"number":"5"}`,
					contentType: "Application/JSON; Charset=\"utf-8\"", status: http.StatusOK, want: map[string]any{"number": "5"}},
				{name: "JSON in Latin-1", method: http.MethodPost, path: "/v1/ping", body: `{"number":"6"}`,
					contentType: "application/json; charset=iso-8859-1", status: http.StatusUnsupportedMediaType,
					want: map[string]any{"code": float64(3), "message": `unsupported content type "application/json; charset=iso-8859-1": a REST route takes a JSON body (Content-Type: application/json)`}},
				// curl -d: google.rpc.Status JSON, as every REST error,
				// not vanguard's plain text.
				{name: "form", method: http.MethodPost, path: "/v1/ping", body: "number=3",
					contentType: "application/x-www-form-urlencoded", status: http.StatusUnsupportedMediaType,
					want: map[string]any{"code": float64(3), "message": `unsupported content type "application/x-www-form-urlencoded": a REST route takes a JSON body (Content-Type: application/json)`}},
				{name: "compression not taken", method: http.MethodPost, path: "/v1/ping", body: `{"number":"3"}`,
					contentType: "application/json", encoding: "br", status: http.StatusUnsupportedMediaType,
					want: map[string]any{"code": float64(3), "message": `"br" compression not supported`}},
				{name: "not found", method: http.MethodPost, path: "/v1/fail/5", status: http.StatusNotFound,
					want: map[string]any{"code": float64(5), "message": "failed as asked"}},
				{name: "permission denied", method: http.MethodPost, path: "/v1/fail/7", status: http.StatusForbidden,
					want: map[string]any{"code": float64(7), "message": "failed as asked"}},
				{name: "internal", method: http.MethodPost, path: "/v1/fail/13", status: http.StatusInternalServerError,
					want: map[string]any{"code": float64(13), "message": "failed as asked"}},
				{name: "validation", method: http.MethodGet, path: "/v1/ping/-1", status: http.StatusBadRequest,
					want: map[string]any{"code": float64(3)}},
				{name: "malformed path variable", method: http.MethodGet, path: "/v1/ping/seven", status: http.StatusBadRequest,
					want: map[string]any{"code": float64(3)}},
				{name: "malformed body", method: http.MethodPost, path: "/v1/ping", body: `{"number":`, status: http.StatusBadRequest,
					want: map[string]any{"code": float64(3)}},
				{name: "body of the wrong type", method: http.MethodPost, path: "/v1/ping", body: `{"number":"many"}`, status: http.StatusBadRequest,
					want: map[string]any{"code": float64(3)}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					var header http.Header
					if tc.contentType != "" {
						header = http.Header{"Content-Type": {tc.contentType}}
					}
					if tc.encoding != "" {
						header["Content-Encoding"] = []string{tc.encoding}
					}
					resp, body := restCall(t, client.c, tc.method, s.URL+tc.path, tc.body, header)
					if resp.StatusCode != tc.status {
						t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
					}
					if tc.want == nil {
						return
					}
					if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
						t.Errorf("%s %s: Content-Type %q, want application/json; body %s", tc.method, tc.path, ct, body)
					}
					var got map[string]any
					if err := json.Unmarshal([]byte(body), &got); err != nil {
						t.Fatalf("%s %s: body %q is not JSON: %v", tc.method, tc.path, body, err)
					}
					for k, v := range tc.want {
						if got[k] != v {
							t.Errorf("%s %s: %s = %v (%T), want %v; body %s", tc.method, tc.path, k, got[k], got[k], v, body)
						}
					}
					if tc.name == "validation" && !strings.Contains(body, "buf.validate.Violations") {
						t.Errorf("validation error's details do not hold the violations: %s", body)
					}
				})
			}
		})
	}
}

// A REST call is a call of its method to kit's chain, once: one rpc log
// line naming the procedure with the request id the client sent, which
// the response echoes, one server span and one count in
// grpc_server_handled_total.
func TestRESTCallRunsTheChain(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	s := newPingServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
	resp, body := restCall(t, s.HTTP1Client(), http.MethodGet, s.URL+"/v1/ping/1", "",
		http.Header{"X-Request-Id": {"rest-call-1"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/ping/1 = %d %s", resp.StatusCode, body)
	}
	if id := resp.Header.Get("X-Request-Id"); id != "rest-call-1" {
		t.Errorf("X-Request-Id = %q, want the client's", id)
	}
	resp, body = restCall(t, s.HTTP2Client(), http.MethodPost, s.URL+"/v1/fail/5", "", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /v1/fail/5 = %d %s", resp.StatusCode, body)
	}
	var lines []map[string]any
	for _, line := range logLines(t, &logs, "rpc") {
		if line["kind"] == "server" {
			lines = append(lines, line)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d server rpc log lines, want 2: %v", len(lines), lines)
	}
	if l := lines[0]; l["procedure"] != pingPath || l["code"] != "ok" || l["request_id"] != "rest-call-1" {
		t.Errorf("the GET's log line: %v", l)
	}
	if l := lines[1]; l["procedure"] != "/connectkit.ping.v1.PingService/Fail" || l["code"] != "not_found" {
		t.Errorf("the POST's log line: %v", l)
	}
	var names []string
	for _, span := range spans.GetSpans().Snapshots() {
		names = append(names, span.SpanKind().String()+" "+span.Name())
	}
	if want := []string{"server connectkit.ping.v1.PingService/Ping", "server connectkit.ping.v1.PingService/Fail"}; !slices.Equal(names, want) {
		t.Errorf("spans %q, want %q", names, want)
	}
	for _, tc := range []struct {
		method, code string
	}{{"Ping", "OK"}, {"Fail", "NotFound"}} {
		labels := map[string]string{"grpc_code": tc.code, "grpc_method": tc.method, "grpc_service": "connectkit.ping.v1.PingService", "grpc_type": "unary"}
		if n := counterValue(t, s.Registry(), "grpc_server_handled_total", labels); n != 1 {
			t.Errorf("grpc_server_handled_total%v = %v, want 1", labels, n)
		}
	}
}

// A path no route has gets a 404: a REST request (no RPC) a
// google.rpc.Status JSON naming its method and path, as grpc-gateway
// answers it (it got net/http's plain "404 page not found"), an RPC to an
// unknown procedure Unimplemented; a route's path with another method
// gets 405. A handler mounted at "/" gets the requests no route takes, as
// they came.
func TestRESTUnknownPaths(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
		body404                  string // what the body holds
	}{
		{name: "REST", method: http.MethodGet, path: "/v1/nothing", status: http.StatusNotFound,
			body404: `{"code":5,"message":"no route matches \"GET\" \"/v1/nothing\"","details":[]}`},
		{name: "REST under a route", method: http.MethodGet, path: "/v1/ping/1/more", status: http.StatusNotFound,
			body404: `{"code":5,"message":"no route matches \"GET\" \"/v1/ping/1/more\"","details":[]}`},
		{name: "REST, a trailing slash", method: http.MethodGet, path: "/v1/ping/1/", status: http.StatusNotFound,
			body404: `{"code":5,"message":"no route matches \"GET\" \"/v1/ping/1/\"","details":[]}`},
		{name: "REST, PATCH of JSON", method: http.MethodPatch, path: "/v1/nothing", body: "{}", status: http.StatusNotFound,
			body404: `{"code":5,"message":"no route matches \"PATCH\" \"/v1/nothing\"","details":[]}`},
		{name: "Connect", method: http.MethodPost, path: "/v1/ping", body: "{}",
			header: http.Header{"Connect-Protocol-Version": {"1"}}, status: http.StatusNotFound, body404: `"unimplemented"`},
		{name: "two content types", method: http.MethodPost, path: "/other.v1.Service/Ping", body: "{}",
			header: http.Header{"Content-Type": {"application/json", "application/json"}}, status: http.StatusNotFound, body404: `"unimplemented"`},
		{name: "two content types, no procedure's path", method: http.MethodPost, path: "/v1/nothing", body: "{}",
			header: http.Header{"Content-Type": {"application/json", "application/json"}}, status: http.StatusNotFound,
			body404: `{"code":5,"message":"no route matches \"POST\" \"/v1/nothing\"","details":[]}`},
		{name: "other method", method: http.MethodDelete, path: "/v1/ping/1", status: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := restCall(t, s.HTTP1Client(), tc.method, s.URL+tc.path, tc.body, tc.header)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.body404) {
				t.Errorf("%s %s = %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body404)
			}
		})
	}

	root := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
		srv.Mount("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Root-Content-Length", strings.Repeat("x", int(r.ContentLength)))
			http.Error(w, "root "+r.URL.Path, http.StatusTeapot)
		}))
	})
	resp, body := restCall(t, root.HTTP1Client(), http.MethodPost, root.URL+"/v1/nothing", "{}", nil)
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("Root-Content-Length") != "xx" {
		t.Errorf("POST /v1/nothing = %d %q, Root-Content-Length %q; want the root handler's 418 with the request's length 2",
			resp.StatusCode, body, resp.Header.Get("Root-Content-Length"))
	}
	resp, body = restCall(t, root.HTTP1Client(), http.MethodGet, root.URL+"/v1/ping/2", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/ping/2 with a root handler = %d %q, want the route's 200", resp.StatusCode, body)
	}

	// The root handler gets the request as it came, though it is larger
	// than a REST body may be and its type another spelling of JSON.
	small := kittest.NewServer(t, kit.Config{MaxRequestBytes: 1024}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
		srv.Mount("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			_, hijacker := w.(http.Hijacker) // net/http's own writer, as a WebSocket handler needs it
			fmt.Fprintf(w, "%d %d %v %s %v", r.ContentLength, len(b), err, r.Header.Get("Content-Type"), hijacker)
		}))
	})
	const ct = "application/json;charset=UTF-8"
	resp, body = restCall(t, small.HTTP1Client(), http.MethodPost, small.URL+"/upload", strings.Repeat("x", 2000), http.Header{"Content-Type": {ct}})
	if want := "2000 2000 <nil> " + ct + " true"; resp.StatusCode != http.StatusOK || body != want {
		t.Errorf("POST /upload of 2000 bytes to a root handler = %d %q, want 200 %q", resp.StatusCode, body, want)
	}
}

// A REST body over KIT_MAX_REQUEST_BYTES is refused as it is read, as a
// Connect JSON call's is: its JSON is over the limit, though the message
// it makes (the one the handler reads) is not. A response is bounded by
// KIT_MAX_RESPONSE_BYTES, not by the request's limit.
func TestRESTBodyLimit(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{MaxRequestBytes: 1024, MaxResponseBytes: 1 << 20}, nil)
	for _, tc := range []struct {
		name   string
		header http.Header
	}{{"with its length", nil}, {"chunked", http.Header{"Transfer-Encoding": {"chunked"}}}} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/v1/ping",
			io.MultiReader(strings.NewReader(`{"text":"small"`+strings.Repeat(" ", 2000)+`}`)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if tc.header == nil {
			req.ContentLength = 2016
		}
		resp, err := s.HTTP1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), `"code":8`) {
			t.Errorf("POST /v1/ping of 2 KB %s with a 1 KiB limit = %d %s, want 429 with code 8 (ResourceExhausted)", tc.name, resp.StatusCode, b)
		}
	}
	text := strings.Repeat("b", 1000) // a request of ~1 KB, a response of more in JSON
	resp, body := restCall(t, s.HTTP1Client(), http.MethodGet, s.URL+"/v1/ping/1?text="+text, "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, text) {
		t.Errorf("GET /v1/ping/1 answering %d bytes of JSON with a 1 KiB request limit and a 1 MiB response limit = %d %.100s, want 200", len(body), resp.StatusCode, body)
	}
	resp, body = restCall(t, s.HTTP1Client(), http.MethodPost, s.URL+"/v1/ping", `{"text":"small"}`, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST /v1/ping under the limit = %d %s", resp.StatusCode, body)
	}
}

// A REST call from a web page passes CORS: the preflight of a DELETE or
// PATCH is answered for a configured origin, and the call's response
// lets the page read its request id.
func TestRESTCORS(t *testing.T) {
	t.Parallel()
	const origin = "https://app.example.com"
	s := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{origin}}, nil)
	for _, method := range []string{http.MethodPatch, http.MethodDelete, http.MethodPut} {
		resp, body := restCall(t, s.HTTP1Client(), http.MethodOptions, s.URL+"/v1/ping/1", "", http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {method},
		})
		if got := resp.Header.Get("Access-Control-Allow-Methods"); got != method {
			t.Errorf("preflight of %s: %d %q, Access-Control-Allow-Methods %q", method, resp.StatusCode, body, got)
		}
	}
	resp, body := restCall(t, s.HTTP1Client(), http.MethodGet, s.URL+"/v1/ping/1", "", http.Header{"Origin": {origin}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("GET /v1/ping/1 from %s: %d %q, headers %v", origin, resp.StatusCode, body, resp.Header)
	}
}

// A REST call in flight when the server shuts down finishes, as an RPC
// does: Run waits for it and returns nil.
func TestRESTCallDrains(t *testing.T) {
	t.Parallel()
	svc := blockingPing()
	s := newPingServer(t, kit.Config{}, svc)
	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL+"/v1/ping/3", nil)
		resp, err := s.HTTP1Client().Do(req)
		if err != nil {
			done <- result{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		done <- result{resp.StatusCode, string(b)}
	}()
	select {
	case <-svc.entered:
	case r := <-done:
		t.Fatalf("GET /v1/ping/3 = %d %s before Ping ran", r.status, r.body)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop() }()
	<-s.ShuttingDown()
	close(svc.block)
	if r := <-done; r.status != http.StatusOK || !strings.Contains(r.body, `"number":"3"`) {
		t.Errorf("in-flight GET /v1/ping/3 = %d %s, want 200 with its number", r.status, r.body)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

// A REST client that sends the headers and part of the body, then
// nothing, gets DeadlineExceeded (504) at the call timeout, as an RPC's
// does, with the message that says so, not the connection's addresses,
// and loses its HTTP/1.1 connection.
func TestRESTBodyTrickleIsCut(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{CallTimeout: 300 * time.Millisecond}, nil)
	conn := srv.Dial(t)
	fmt.Fprintf(conn, "POST /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"number\":")
	br := bufio.NewReader(conn)
	res, got := readRawResponse(t, conn, br)
	if res.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(got), `"code":4`) {
		t.Errorf("%d %q, want 504 with code 4 (DeadlineExceeded)", res.StatusCode, got)
	}
	if !strings.Contains(string(got), bodyMessage) || strings.Contains(string(got), "127.0.0.1") {
		t.Errorf("%q, want the message %q and no address", got, bodyMessage)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want the connection closed (EOF)", err)
	}
}

// A REST request that does not make a request message (a malformed body,
// a body of the wrong type, a path variable or query parameter that does
// not parse, a body that does not inflate) is answered its error and its
// method does not run: vanguard reports the error to the client but hands
// the handler an empty body, which made an empty message that the method
// ran with (Ping logged OK while its client got 400).
func TestRESTBadRequestDoesNotRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
		message                  string // in the google.rpc.Status's message, if not ""
	}{
		{name: "malformed body", method: http.MethodPost, path: "/v1/ping", body: `{"number":`, status: http.StatusBadRequest},
		{name: "body of the wrong type", method: http.MethodPost, path: "/v1/ping", body: `{"number":"many"}`, status: http.StatusBadRequest},
		{name: "malformed path variable", method: http.MethodGet, path: "/v1/ping/seven", status: http.StatusBadRequest},
		{name: "malformed query parameter", method: http.MethodGet, path: "/v1/ping/1?number=x", status: http.StatusBadRequest},
		{name: "body that does not inflate", method: http.MethodPost, path: "/v1/ping", body: `{"number":"1"}`,
			header: http.Header{"Content-Encoding": {"gzip"}}, status: http.StatusBadRequest, message: "gzip"},
		{name: "gzip body cut short", method: http.MethodPost, path: "/v1/ping", body: gzipped(`{"number":"1"}`)[:15],
			header: http.Header{"Content-Encoding": {"gzip"}}, status: http.StatusBadRequest, message: "gzip"},
		{name: "query parameter inside a string", method: http.MethodGet, path: "/v1/ping/1?text.x=1",
			status: http.StatusBadRequest, message: `invalid query parameter "text.x": field "text"`},
		{name: "query parameter inside a string, with a body", method: http.MethodPost, path: "/v1/ping?text.x=1", body: `{"number":"1"}`,
			status: http.StatusBadRequest, message: `invalid query parameter "text.x": field "text"`},
		{name: "query parameter of no name", method: http.MethodGet, path: "/v1/ping/1?=1",
			status: http.StatusBadRequest, message: `invalid query parameter ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := blockingPing()
			close(svc.block)
			s := newPingServer(t, kit.Config{}, svc)
			resp, body := restCall(t, s.HTTP1Client(), tc.method, s.URL+tc.path, tc.body, tc.header)
			if resp.StatusCode < 400 || tc.status != 0 && resp.StatusCode != tc.status {
				t.Errorf("%s %s = %d %s, want an error (%d)", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: Content-Type %q of the google.rpc.Status JSON %s, want application/json", tc.method, tc.path, ct, body)
			}
			if tc.message != "" {
				var st struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal([]byte(body), &st); err != nil || st.Code != 3 || !strings.Contains(st.Message, tc.message) {
					t.Errorf("%s %s: body %s, want a google.rpc.Status of code 3 (InvalidArgument) whose message names %q", tc.method, tc.path, body, tc.message)
				}
			}
			select {
			case <-svc.entered:
				t.Errorf("%s %s (%d %s) ran Ping", tc.method, tc.path, resp.StatusCode, body)
			default:
			}
			// An empty message is a message: GET /v1/ping/0 sends none.
			if resp, body := restCall(t, s.HTTP1Client(), http.MethodGet, s.URL+"/v1/ping/0", "", nil); resp.StatusCode != http.StatusOK {
				t.Errorf("GET /v1/ping/0 = %d %s, want 200", resp.StatusCode, body)
			}
		})
	}
}

// gzipped returns s compressed with gzip.
func gzipped(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.String()
}

// A REST body sent with Content-Encoding: gzip is inflated before it is
// decoded, over HTTP/1.1 and h2c.
func TestRESTGzipBody(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
		resp, body := restCall(t, client, http.MethodPost, s.URL+"/v1/ping", gzipped(`{"number":"8","text":"zipped"}`),
			http.Header{"Content-Encoding": {"gzip"}})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"zipped"`) {
			t.Errorf("POST /v1/ping gzipped = %d %s, want 200 echoing the text", resp.StatusCode, body)
		}
	}
}

// A path variable is matched and unescaped as google.api.http has it: a
// %2F in a one-segment variable is a slash of its value, not a segment of
// the path, and %25 a percent sign; a handler mounted at "/" still gets a
// path no route matches as it came.
func TestRESTPathVariableEscapes(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
		srv.Mount("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "root %s %s", r.URL.Path, r.URL.RawPath)
		}))
	})
	for _, tc := range []struct {
		name, path string
		status     int
		body       string // what the response holds
	}{
		{name: "escaped digit", path: "/v1/ping/%37", status: http.StatusOK, body: `"number":"7"`},
		// An unreserved character is the same escaped or not (RFC 3986
		// 6.2.2.2), in a route's literal segment too.
		{name: "escaped letter of a literal segment", path: "/v1/%70ing/7", status: http.StatusOK, body: `"number":"7"`},
		{name: "escaped letters in lower-case hex", path: "/v1/%70%69%6e%67/7", status: http.StatusOK, body: `"number":"7"`},
		{name: "escaped tilde and dash", path: "/v1/ping/%7E%2D", status: http.StatusBadRequest, body: `\"number\": invalid character '~'`},
		// A path with an escaped slash is matched with the slash
		// unescaped, as grpc-gateway's default has it: no route here.
		{name: "escaped slash", path: "/v1/ping/1%2F2", status: http.StatusOK, body: "root /v1/ping/1/2 /v1/ping/1%2F2"},
		{name: "escaped slash in lower case", path: "/v1/ping/1%2f2", status: http.StatusOK, body: "root /v1/ping/1/2 /v1/ping/1%2f2"},
		// Ping's number is an int64: a value that reached it fails to parse, naming itself.
		{name: "escaped percent", path: "/v1/ping/5%25", status: http.StatusBadRequest, body: `\"number\": invalid character '%'`},
		{name: "no route", path: "/files/a%2Fb", status: http.StatusOK, body: "root /files/a/b /files/a%2Fb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := restCall(t, s.HTTP1Client(), http.MethodGet, s.URL+tc.path, "", nil)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.body) {
				t.Errorf("GET %s = %d %s, want %d with %q", tc.path, resp.StatusCode, body, tc.status, tc.body)
			}
		})
	}
}

// A HEAD is answered wherever a GET is, with the GET's header and no body,
// over HTTP/1.1 and h2c, and a route's 405 allows it beside GET; a HEAD no
// route matches reaches the handler mounted at "/" as a HEAD.
func TestRESTHead(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
		srv.Mount("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Root-Method", r.Method)
			w.WriteHeader(http.StatusTeapot)
		}))
	})
	for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
		resp, body := restCall(t, client, http.MethodHead, s.URL+"/v1/ping/7", "", nil)
		if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("HEAD /v1/ping/7 over %s = %d %q, header %v; want 200, no body, the GET's JSON type and a request id", resp.Proto, resp.StatusCode, body, resp.Header)
		}
	}
	resp, _ := restCall(t, s.HTTP1Client(), http.MethodPut, s.URL+"/v1/ping/7", "", nil)
	if allow := resp.Header.Get("Allow"); resp.StatusCode != http.StatusMethodNotAllowed || allow != "GET,HEAD" {
		t.Errorf("PUT /v1/ping/7 = %d, Allow %q; want 405 allowing GET,HEAD", resp.StatusCode, allow)
	}
	resp, _ = restCall(t, s.HTTP1Client(), http.MethodHead, s.URL+"/files/x", "", nil)
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("Root-Method") != http.MethodHead {
		t.Errorf("HEAD /files/x = %d, Root-Method %q; want the root handler's 418, as a HEAD", resp.StatusCode, resp.Header.Get("Root-Method"))
	}
}

// A REST call takes the deadline its client asks for in Connect-Timeout-Ms,
// X-Server-Timeout (vanguard's REST header, in seconds) or Grpc-Timeout
// (which grpc-gateway honours), and CallTimeout without one.
func TestRESTCallerTimeout(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{CallTimeout: time.Hour, MaxCallTimeout: 2 * time.Hour}, nil)
	for _, tc := range []struct {
		name   string
		header http.Header
		asked  bool // the deadline is the client's, not CallTimeout's
	}{
		{name: "Connect-Timeout-Ms", header: http.Header{"Connect-Timeout-Ms": {"90000"}}, asked: true},
		{name: "X-Server-Timeout", header: http.Header{"X-Server-Timeout": {"90"}}, asked: true},
		{name: "Grpc-Timeout", header: http.Header{"Grpc-Timeout": {"90S"}}, asked: true},
		{name: "Grpc-Timeout in milliseconds", header: http.Header{"Grpc-Timeout": {"90000m"}}, asked: true},
		{name: "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sent := time.Now()
			resp, body := restCall(t, s.HTTP1Client(), http.MethodGet, s.URL+"/v1/ping/1", "", tc.header)
			deadline, err := time.Parse(time.RFC3339Nano, resp.Header.Get("Deadline"))
			if resp.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("GET /v1/ping/1 = %d %s, Deadline %q: %v", resp.StatusCode, body, resp.Header.Get("Deadline"), err)
			}
			// The client's 90 s against CallTimeout's hour: far apart, whatever the machine's pace.
			if asked := deadline.Before(sent.Add(30 * time.Minute)); asked != tc.asked {
				t.Errorf("deadline %v after the call was sent, want the client's 90 s: %v", deadline.Sub(sent), tc.asked)
			}
		})
	}
}

// A REST call sent with a Grpc-Timeout beside a Connect-Timeout-Ms or
// X-Server-Timeout runs under the latter, its body and response too (kit's
// bounds on them read a Grpc-Timeout first, connect only
// Connect-Timeout-Ms): the service's handler gets one timeout, the one
// connect reads, so that a Grpc-Timeout of a nanosecond does not cut a
// call whose client asked for a minute.
func TestRESTTimeoutHeadersAgree(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen http.Header // the last call's, as the service's handler got it
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		path, h := pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...)
		srv.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = r.Header.Clone()
			mu.Unlock()
			h.ServeHTTP(w, r)
		}))
	})
	for _, tc := range []struct {
		header http.Header
		ms     string // the Connect-Timeout-Ms the handler gets
	}{
		{http.Header{"Grpc-Timeout": {"90S"}}, "90000"},
		{http.Header{"Grpc-Timeout": {"1n"}, "Connect-Timeout-Ms": {"60000"}}, "60000"},
		{http.Header{"Grpc-Timeout": {"1n"}, "X-Server-Timeout": {"60"}}, "60000"},
		{http.Header{"Grpc-Timeout": {"1x"}, "Connect-Timeout-Ms": {"60000"}}, "60000"},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, http.MethodPost, s.URL+"/v1/ping", `{"number":"3"}`, tc.header)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"3"`) {
				t.Errorf("POST /v1/ping over %s with %v = %d %s, want 200 under the client's %s ms", resp.Proto, tc.header, resp.StatusCode, body, tc.ms)
			}
			mu.Lock()
			if seen["Grpc-Timeout"] != nil || seen.Get("Connect-Timeout-Ms") != tc.ms {
				t.Errorf("POST /v1/ping over %s with %v: the handler got Grpc-Timeout %q and Connect-Timeout-Ms %q, want only the latter, %s",
					resp.Proto, tc.header, seen.Get("Grpc-Timeout"), seen.Get("Connect-Timeout-Ms"), tc.ms)
			}
			mu.Unlock()
		}
	}
}

// Which handler answers a REST route's path: a handler mounted at the
// path or a prefix of it keeps it; otherwise the route answers, before a
// handler mounted at "/", also with another method (405); "/" gets the
// paths no route has.
func TestRESTRoutesBesideOtherHandlers(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
		srv.Mount("/v1/fail/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "prefix %s %s", r.Method, r.URL.Path)
		}))
		srv.Mount("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "root %s %s", r.Method, r.URL.Path)
		}))
	})
	for _, tc := range []struct {
		method, path string
		status       int
		body         string // what the response holds
	}{
		{http.MethodGet, "/v1/ping/3", http.StatusOK, `"number":"3"`},
		{http.MethodPost, "/v1/ping", http.StatusOK, `"number":"0"`},
		{http.MethodPut, "/v1/ping/3", http.StatusMethodNotAllowed, `{"code":12,"message":"method \"PUT\" not allowed: the path takes GET,HEAD"`},
		{http.MethodPost, "/v1/fail/5", http.StatusOK, "prefix POST /v1/fail/5"},
		{http.MethodGet, "/v1/ping/3/more", http.StatusOK, "root GET /v1/ping/3/more"},
		{http.MethodGet, "/index.html", http.StatusOK, "root GET /index.html"},
	} {
		body := ""
		if tc.method == http.MethodPost {
			body = "{}"
		}
		resp, got := restCall(t, s.HTTP1Client(), tc.method, s.URL+tc.path, body, nil)
		if resp.StatusCode != tc.status || !strings.Contains(got, tc.body) {
			t.Errorf("%s %s = %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode, got, tc.status, tc.body)
		}
	}
}

// registerShelves registers, once, the descriptor of the service
// connectkit.test.v1.Shelves, whose routes have variables of several
// segments, with and without "**", beside a one-segment variable where
// another method's route has the same segments, and a route of custom
// kind HEAD.
var registerShelves = sync.OnceValue(func() error {
	opts := func(rule *annotations.HttpRule) *descriptorpb.MethodOptions {
		o := &descriptorpb.MethodOptions{}
		proto.SetExtension(o, annotations.E_Http, rule)
		return o
	}
	method := func(name string, rule *annotations.HttpRule) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{
			Name: proto.String(name), InputType: proto.String(".connectkit.test.v1.Shelf"),
			OutputType: proto.String(".connectkit.test.v1.Shelf"), Options: opts(rule),
		}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:        proto.String("connectkit/test/v1/shelves.proto"),
		Package:     proto.String("connectkit.test.v1"),
		Syntax:      proto.String("proto3"),
		Dependency:  []string{"google/api/annotations.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Shelf"), Field: []*descriptorpb.FieldDescriptorProto{stringField("name", 1), stringField("id", 2)}}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Shelves"),
			Method: []*descriptorpb.MethodDescriptorProto{
				method("Get", &annotations.HttpRule{
					Pattern: &annotations.HttpRule_Get{Get: "/v1/{name=shelves/*}"},
					AdditionalBindings: []*annotations.HttpRule{
						{Pattern: &annotations.HttpRule_Get{Get: "/v1/{name=shelves/*/books/*}"}},
						{Pattern: &annotations.HttpRule_Get{Get: "/v2/{name=shelves/**}"}},
						{Pattern: &annotations.HttpRule_Custom{Custom: &annotations.CustomHttpPattern{Kind: "GET", Path: "/v1/{name=shelves/*}:peek"}}},
					},
				}),
				method("Delete", &annotations.HttpRule{Pattern: &annotations.HttpRule_Delete{Delete: "/v1/shelves/{id}"}}),
				method("Head", &annotations.HttpRule{Pattern: &annotations.HttpRule_Custom{Custom: &annotations.CustomHttpPattern{Kind: "HEAD", Path: "/v1/heads/{id}"}}}),
			},
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		return err
	}
	return registerFile(fd)
})

// stringField is an optional string field of a test descriptor.
func stringField(name string, n int32) *descriptorpb.FieldDescriptorProto {
	return &descriptorpb.FieldDescriptorProto{
		Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n),
		Type:  descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
		Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
	}
}

// registerFile registers fd in protoregistry.GlobalFiles once protovalidate's
// global validator is made, which the tests' servers validate with: making
// it ranges over GlobalFiles and, in that range, reads GlobalFiles again
// (cel-go's registerFiles), a read lock taken twice, so that a RegisterFile
// waiting for the write lock between the two blocked both for good, and
// go test's timeout ended the run (seen twice in fourteen runs of the REST
// tests with -race, TestRESTHeadRouteAllow registering while a call made
// the validator).
func registerFile(fd protoreflect.FileDescriptor) error {
	if err := protovalidate.Validate(&emptypb.Empty{}); err != nil {
		return err
	}
	return protoregistry.GlobalFiles.RegisterFile(fd)
}

// A path with a %2F is matched as if it were a slash, as grpc-gateway's
// default has it, so that no variable gets a value of a shape its template
// cannot have: vanguard v0.4.0 unescapes a %2F in "{name=shelves/*}" into
// a slash ("shelves/a/../../admin"), as it does in a one-segment variable.
func TestRESTMultiSegmentVariableEscapes(t *testing.T) {
	t.Parallel()
	if err := registerShelves(); err != nil {
		t.Fatal(err)
	}
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		// Echoes the request message, in the binary protobuf vanguard sends.
		srv.Mount("/connectkit.test.v1.Shelves/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/proto")
			_, _ = w.Write(b)
		}))
	})
	for _, tc := range []struct {
		method, path string
		name, id     string // the values the method gets
	}{
		{http.MethodGet, "/v1/shelves/a", "shelves/a", ""},
		{http.MethodGet, "/v1/shelves/a%2Fb", "", ""},
		{http.MethodGet, "/v1/shelves/a%2fb", "", ""},
		{http.MethodGet, "/v1/shelves/a%2F..%2F..%2Fadmin", "", ""},
		{http.MethodGet, "/v1/shelves/1%2Fbooks%2F2", "shelves/1/books/2", ""},
		{http.MethodGet, "/v1/shelves/1%2Fbooks%2F2/books/3", "", ""},
		{http.MethodGet, "/v1/shelves/a%2Fb:peek", "", ""},
		{http.MethodGet, "/v2/shelves/a%2Fb/c", "shelves/a/b/c", ""},
		{http.MethodDelete, "/v1/shelves/a%2Fb", "", ""},
		{http.MethodDelete, "/v1/shelves/a", "", "a"},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, tc.method, s.URL+tc.path, "", nil)
			if tc.name == "" && tc.id == "" { // no route: 404
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s %s over %s = %d %s, want 404", tc.method, tc.path, resp.Proto, resp.StatusCode, body)
				}
				continue
			}
			var got struct{ Name, ID string }
			if err := json.Unmarshal([]byte(body), &got); resp.StatusCode != http.StatusOK || err != nil || got.Name != tc.name || got.ID != tc.id {
				t.Errorf("%s %s over %s = %d %s, want 200 with name %q and id %q", tc.method, tc.path, resp.Proto, resp.StatusCode, body, tc.name, tc.id)
			}
		}
	}
}

// Where a route of custom kind HEAD is mounted, a HEAD is matched as sent,
// not as a GET, and so a 405 that allows GET does not name HEAD.
func TestRESTHeadRouteAllow(t *testing.T) {
	t.Parallel()
	if err := registerShelves(); err != nil {
		t.Fatal(err)
	}
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount("/connectkit.test.v1.Shelves/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/proto")
		}))
	})
	for _, method := range []string{http.MethodHead, http.MethodPut} {
		resp, _ := restCall(t, s.HTTP1Client(), method, s.URL+"/v1/shelves/a", "", nil)
		allow := resp.Header.Get("Allow")
		if resp.StatusCode != http.StatusMethodNotAllowed || !containsFold(allow, http.MethodGet) || containsFold(allow, http.MethodHead) {
			t.Errorf("%s /v1/shelves/a = %d, Allow %q; want 405 allowing GET, not HEAD", method, resp.StatusCode, allow)
		}
	}
	if resp, _ := restCall(t, s.HTTP1Client(), http.MethodHead, s.URL+"/v1/heads/a", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /v1/heads/a = %d, want 200 from its route", resp.StatusCode)
	}
}

// A query parameter whose name ends in "." is read as one whose last
// element names no field: 400 InvalidArgument after a field that is not a
// message, ignored after one that names nothing, as grpc-gateway has it.
// Vanguard v0.4.0 panicked on it, which closed an HTTP/1.1 connection
// without a response and reset an HTTP/2 stream.
func TestRESTQueryParameterEndingInDot(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	for _, tc := range []struct {
		query  string
		status int
	}{
		{"text.=1", http.StatusBadRequest},
		{"text%2E=1", http.StatusBadRequest},
		{"text%2e=1&number.=2", http.StatusBadRequest},
		{"_.=1", http.StatusOK},
		{"text=a.&_=b.", http.StatusOK},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, http.MethodGet, s.URL+"/v1/ping/7?"+tc.query, "", nil)
			if resp.StatusCode != tc.status {
				t.Errorf("GET /v1/ping/7?%s over %s = %d %s, want %d", tc.query, resp.Proto, resp.StatusCode, body, tc.status)
			}
			if tc.status == http.StatusBadRequest && !strings.Contains(body, `"code":3`) {
				t.Errorf("GET /v1/ping/7?%s over %s = %s, want InvalidArgument", tc.query, resp.Proto, body)
			}
		}
	}
}

// A REST request that is not UTF-8 where JSON or a string field must be
// is 400 InvalidArgument, its message UTF-8: a body whose bytes protojson
// quotes in its error got vanguard's {"code":13,"message":"failed to
// marshal end error"} (under HTTP 400), and a query parameter or path
// variable of a string field, which vanguard failed to encode for the
// handler, 500 Internal.
func TestRESTInvalidUTF8(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/ping", "\xa70"},
		{http.MethodPost, "/v1/ping", `{"number":1,` + "\xff}"},
		{http.MethodGet, "/v1/ping/7?text=%A7", ""},
		{http.MethodGet, "/v1/ping/7?text=a%C3", ""},
		// Vanguard quotes a value that does not parse in its error.
		{http.MethodGet, "/v1/ping/%22%FF%22", ""},
		{http.MethodGet, "/v1/ping/7?number=%22a%FF%22", ""},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, tc.method, s.URL+tc.path, tc.body, nil)
			var status struct {
				Code    int
				Message string
			}
			if err := json.Unmarshal([]byte(body), &status); err != nil || resp.StatusCode != http.StatusBadRequest || status.Code != 3 || status.Message == "" || !utf8.ValidString(body) {
				t.Errorf("%s %s %q over %s = %d %s, want 400 InvalidArgument with a message", tc.method, tc.path, tc.body, resp.Proto, resp.StatusCode, body)
			}
		}
	}
}

// othersService is connectkit.conflict.v1.Others, whose route's request
// has a field "times" that is a list of strings, where [thingsService]'s
// is a list of Timestamps.
var othersService = sync.OnceValues(func() (protoreflect.ServiceDescriptor, error) {
	return registerService(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("connectkit/conflict/v1/others.proto"),
		Package:    proto.String("connectkit.conflict.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/api/annotations.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Other"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("times"), JsonName: proto.String("times"), Number: proto.Int32(1),
				Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
			}},
		}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Others"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("List"), InputType: proto.String(".connectkit.conflict.v1.Other"),
				OutputType: proto.String(".connectkit.conflict.v1.Other"),
				Options: func() *descriptorpb.MethodOptions {
					o := &descriptorpb.MethodOptions{}
					proto.SetExtension(o, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/others"}})
					return o
				}(),
			}},
		}},
	})
})

// A panic under vanguard's transcoding is 500 Internal, google.rpc.Status
// JSON that says nothing of the panic, logged once, and the connection
// serves the next request: net/http closed the HTTP/1.1 connection
// without a response, or reset the HTTP/2 stream. Vanguard v0.4.0
// panicked on a query parameter of a repeated well-known type, which kit
// now sets itself (see TestRESTQueryNameOfTwoKinds); what panics here is
// the handler vanguard calls, Others' List, a plain http.Handler mounted
// without kit's chain (and so without its recovery), which vanguard's
// ServeHTTP passes on as its own.
func TestRESTTranscodingPanicIsInternal(t *testing.T) {
	t.Parallel()
	others, err := othersService()
	if err != nil {
		t.Fatal(err)
	}
	s := &fuzzServer{log: &fuzzLog{}, reg: prometheus.NewRegistry()}
	s.Server = kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		mountThings(t, srv)
		srv.Mount("/"+string(others.FullName())+"/", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic("the handler's bug")
		}))
	}, kit.WithLogger(slog.New(s.log)), kit.WithRegistry(s.reg))
	for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
		before := s.log.panicCount()
		resp, body := restCall(t, client, http.MethodGet, s.URL+"/v1/others?times=x", "", nil)
		if resp.StatusCode != http.StatusInternalServerError || body != `{"code":13,"message":"internal error","details":[]}` {
			t.Errorf("GET /v1/others over %s = %d %s, want 500 Internal", resp.Proto, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET /v1/others over %s: Content-Type %q, want application/json", resp.Proto, ct)
		}
		if lines := s.log.panicsSince(before); len(lines) != 1 || !strings.Contains(lines[0], "stack=") || !strings.Contains(lines[0], "the handler's bug") {
			t.Errorf("GET /v1/others over %s logged %q, want one panic line with its value and stack", resp.Proto, lines)
		}
		resp, body = restCall(t, client, http.MethodGet, s.URL+"/v1/things/7", "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("next GET over %s = %d %s, want 200", resp.Proto, resp.StatusCode, body)
		}
	}
}

// A REST request to a path that is not clean ("//", a "." or ".."
// segment) gets 404, google.rpc.Status JSON naming the path and its clean
// form, as grpc-gateway answers it: the ServeMux redirected it, 307 with an
// HTML body. What may be a Connect call (a POST of JSON whose clean path
// is a procedure's, see TestRESTUnknownPostPaths), a path of
// another handler mounted beside the services, and any path when a
// handler is mounted at "/", keep the ServeMux's redirect.
func TestRESTUncleanPaths(t *testing.T) {
	t.Parallel()
	mount := func(root bool) func(*kit.Server) {
		return func(srv *kit.Server) {
			srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
			srv.Mount("/healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
			if root {
				srv.Mount("/", http.NotFoundHandler())
			}
		}
	}
	s := kittest.NewServer(t, kit.Config{}, mount(false))
	withRoot := kittest.NewServer(t, kit.Config{}, mount(true))
	for _, tc := range []struct {
		name, method, path, body string
		root                     bool
		status                   int
		clean                    string // the clean form the 404 names
	}{
		{name: "leading //", method: http.MethodGet, path: "//v1/ping/1", status: http.StatusNotFound, clean: "/v1/ping/1"},
		{name: "inner //", method: http.MethodGet, path: "/v1//ping/1", status: http.StatusNotFound, clean: "/v1/ping/1"},
		{name: "dot", method: http.MethodGet, path: "/v1/./ping/1", status: http.StatusNotFound, clean: "/v1/ping/1"},
		{name: "dot dot", method: http.MethodDelete, path: "/v1/x/../ping/1", status: http.StatusNotFound, clean: "/v1/ping/1"},
		{name: "PATCH", method: http.MethodPatch, path: "/v1//ping/1", body: `{}`, status: http.StatusNotFound, clean: "/v1/ping/1"},
		{name: "trailing slash kept", method: http.MethodGet, path: "/v1//nothing/", status: http.StatusNotFound, clean: "/v1/nothing/"},
		{name: "POST of JSON", method: http.MethodPost, path: "/v1//ping", body: `{}`, status: http.StatusNotFound, clean: "/v1/ping"},
		{name: "POST of JSON to a procedure's path", method: http.MethodPost, path: "//other.v1.Service/Ping", body: `{}`, status: http.StatusTemporaryRedirect},
		{name: "another handler's path", method: http.MethodGet, path: "//healthz", status: http.StatusTemporaryRedirect},
		{name: "a root handler", method: http.MethodGet, path: "/v1//ping/1", root: true, status: http.StatusTemporaryRedirect},
	} {
		srv := s
		if tc.root {
			srv = withRoot
		}
		for _, c := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
			client := &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, body := restCall(t, client, tc.method, srv.URL+tc.path, tc.body, nil)
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			want := ""
			if tc.clean != "" {
				want = fmt.Sprintf(`no route matches %q %q: the path has an empty segment ("//"), a "." or a ".."; its clean form is %q`, tc.method, tc.path, tc.clean)
			}
			if resp.StatusCode != tc.status || want != "" && (json.Unmarshal([]byte(body), &st) != nil || st.Code != 5 || st.Message != want || resp.Header.Get("Content-Type") != "application/json") {
				t.Errorf("%s: %s %s over %s = %d %s %s, want %d %s", tc.name, tc.method, tc.path, resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, want)
			}
		}
	}
}
