package kit_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

const rejectedMsg = "rpc rejected before the interceptor chain"

// codeNames are the rpc lines' names of the grpc_code labels' codes.
var codeNames = map[string]string{
	"Unimplemented": "unimplemented", "InvalidArgument": "invalid_argument",
	"ResourceExhausted": "resource_exhausted", "DeadlineExceeded": "deadline_exceeded",
}

// A call that connect answers before kit's chain runs (so that Logging and
// Metrics never see it) is counted in kit_rejected_calls_total and logged
// at warn, in every protocol and over HTTP/1.1 and h2c; the raw requests
// are ones that connect's clients cannot send.
func TestRejectedCallsAreObserved(t *testing.T) {
	t.Parallel()
	const (
		failPath    = "/connectkit.ping.v1.PingService/Fail"
		countUpPath = "/connectkit.ping.v1.PingService/CountUp"
		sumPath     = "/connectkit.ping.v1.PingService/Sum"
	)
	cases := []struct {
		name     string
		method   string
		path     string
		body     string
		header   []string
		chunked  bool // the body sent without a Content-Length
		protocol string
		code     string // grpc_code, read back from the response, or noted by kit
		errorHas string // in the line's error
	}{
		{name: "JSON that does not decode", path: pingPath, body: "{bad",
			header: []string{"Content-Type", "application/json"}, protocol: "connect", code: "InvalidArgument",
			errorHas: "syntax error (line 1:2): invalid value bad"},
		{name: "protobuf that does not decode", path: pingPath, body: "\xff\xff",
			header: []string{"Content-Type", "application/proto"}, protocol: "connect", code: "InvalidArgument",
			errorHas: "cannot parse invalid wire-format data"},
		{name: "malformed Connect-Timeout-Ms", path: pingPath, body: "{}",
			header: []string{"Content-Type", "application/json", "Connect-Timeout-Ms", "soon"}, protocol: "connect",
			code: "InvalidArgument", errorHas: `parse timeout: strconv.ParseInt: parsing "soon"`},
		{name: "GET whose message does not decode", method: http.MethodGet,
			path: pingPath + "?connect=v1&encoding=json&message=%7Bbad", protocol: "connect", code: "InvalidArgument",
			errorHas: "unmarshal message"},
		{name: "GET without a message", method: http.MethodGet,
			path: pingPath + "?connect=v1&encoding=json", protocol: "connect", code: "InvalidArgument",
			errorHas: "missing message parameter"},
		{name: "GET with an unknown compression", method: http.MethodGet,
			path: pingPath + "?connect=v1&encoding=json&compression=weird&message=%7B%7D", protocol: "connect",
			code: "Unimplemented", errorHas: `unknown compression "weird"`},
		{name: "body over MaxRequestBytes without Content-Length", path: pingPath, chunked: true,
			body:   `{"text":"` + strings.Repeat("a", 2048) + `"}`,
			header: []string{"Content-Type", "application/json"}, protocol: "connect", code: "ResourceExhausted",
			errorHas: "message size 2059 is larger than configured max 1024"},
		{name: "gzip body that is not gzip", path: pingPath, body: "{}",
			header: []string{"Content-Type", "application/json", "Content-Encoding", "gzip"}, protocol: "connect",
			code: "InvalidArgument", errorHas: "get decompressor"},
		{name: "unsupported content type", path: pingPath, body: "{}",
			header: []string{"Content-Type", "application/weird"}, protocol: "connect",
			errorHas: `unsupported content type "application/weird"`},
		// A content type connect does not serve whose protocol is clear:
		// the request's, since a 415 has no content type.
		{name: "gRPC-Web text mode", path: pingPath, body: "AAAAAAA=",
			header: []string{"Content-Type", "application/grpc-web-text"}, protocol: "grpcweb",
			errorHas: `unsupported content type "application/grpc-web-text": gRPC-Web's text mode`},
		{name: "gRPC-Web text mode with a codec", path: pingPath, body: "AAAAAAA=",
			header: []string{"Content-Type", "application/grpc-web-text+proto"}, protocol: "grpcweb",
			errorHas: "gRPC-Web's text mode"},
		{name: "gRPC with a codec not served", path: pingPath, body: "\x00\x00\x00\x00\x00",
			header: []string{"Content-Type", "application/grpc+xml"}, protocol: "grpc",
			errorHas: `unsupported content type "application/grpc+xml"`},
		{name: "unknown compression", path: pingPath, body: "{}",
			header: []string{"Content-Type", "application/json", "Content-Encoding", "weird"}, protocol: "connect",
			code: "Unimplemented", errorHas: `unknown compression "weird": supported encodings are gzip`},
		// kit answers it itself, and notes its status for the line.
		{name: "body over MaxRequestBytes", path: pingPath, body: `{"text":"` + strings.Repeat("a", 2048) + `"}`,
			header: []string{"Content-Type", "application/json"}, protocol: "connect", code: "ResourceExhausted",
			errorHas: "request body of 2059 bytes exceeds the 1024-byte limit (KIT_MAX_REQUEST_BYTES)"},
		// A Connect GET's codec is its query's encoding: connect's 415.
		{name: "GET with an unknown encoding", method: http.MethodGet,
			path: pingPath + "?connect=v1&encoding=xml&message=%7B%7D", protocol: "connect",
			errorHas: `unsupported encoding "xml"`},
		{name: "GET without an encoding", method: http.MethodGet,
			path: pingPath + "?connect=v1&message=%7B%7D", protocol: "connect",
			errorHas: "Connect GET without an encoding query parameter"},
		{name: "GET of a method with side effects", method: http.MethodGet,
			path: failPath + "?connect=v1&encoding=json&message=%7B%7D", protocol: "connect"},
		{name: "gRPC unary without a message", path: pingPath,
			header: []string{"Content-Type", "application/grpc"}, protocol: "grpc", code: "Unimplemented"},
		// A Connect stream's error is in the message that ends it.
		{name: "Connect stream with a malformed Connect-Timeout-Ms", path: countUpPath, body: "\x00\x00\x00\x00\x02{}",
			header: []string{"Content-Type", "application/connect+json", "Connect-Timeout-Ms", "soon"}, protocol: "connect",
			code: "InvalidArgument", errorHas: `parse timeout: strconv.ParseInt: parsing "soon"`},
		// connect compresses an end of 1 KiB or more for a client that
		// accepts gzip: its message quotes the client's timeout.
		{name: "Connect stream with a long malformed Connect-Timeout-Ms, gzip accepted", path: countUpPath, body: "\x00\x00\x00\x00\x02{}",
			header: []string{"Content-Type", "application/connect+json", "Connect-Timeout-Ms", strings.Repeat("1", 1100),
				"Connect-Accept-Encoding", "gzip"}, protocol: "connect",
			code: "InvalidArgument", errorHas: `parse timeout: "111`},
		{name: "Connect client stream with an unknown compression", path: sumPath, body: "\x00\x00\x00\x00\x02{}",
			header: []string{"Content-Type", "application/connect+proto", "Connect-Content-Encoding", "weird"}, protocol: "connect",
			code: "Unimplemented", errorHas: `unknown compression "weird"`},
		{name: "gRPC-Web unary without a message", path: pingPath,
			header: []string{"Content-Type", "application/grpc-web"}, protocol: "grpcweb", code: "Unimplemented"},
		{name: "gRPC message that does not decode", path: pingPath, body: "\x00\x00\x00\x00\x02\xff\xff",
			header: []string{"Content-Type", "application/grpc"}, protocol: "grpc", code: "InvalidArgument"},
	}
	for _, tc := range cases {
		runRejected(t, tc.name, func(t *testing.T, srv *kittest.Server, client *http.Client, logs *syncBuffer, h2 bool) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, srv.URL+tc.path, bytes.NewReader([]byte(tc.body)))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.body == "":
				req.Body, req.ContentLength = http.NoBody, 0
			case tc.chunked:
				req.Body, req.ContentLength = io.NopCloser(strings.NewReader(tc.body)), -1
			}
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			req.Header.Set("X-Request-Id", "client-id-1")
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = readAll(t, res.Body)
			res.Body.Close()
			if noted := res.Header.Values("Kit-Rejected-Status"); len(noted) != 0 || res.Trailer.Get("Kit-Rejected-Status") != "" {
				t.Errorf("the client got kit's note Kit-Rejected-Status: %q %v", noted, res.Trailer)
			}
			code := res.Header.Get("Grpc-Status") + res.Trailer.Get("Grpc-Status")
			if stream := strings.HasPrefix(res.Header.Get("Content-Type"), "application/connect+"); res.StatusCode == http.StatusOK && code == "" && !stream {
				t.Fatalf("the call succeeded: %d %v", res.StatusCode, res.Header)
			}
			method = strings.TrimPrefix(strings.Split(tc.path, "?")[0], "/connectkit.ping.v1.PingService/")
			labels := map[string]string{
				"grpc_service": "connectkit.ping.v1.PingService", "grpc_method": method,
				"protocol": tc.protocol, "grpc_code": tc.code,
			}
			line := rejectedOnce(t, srv, logs, labels)
			want := map[string]any{"level": "WARN", "procedure": strings.Split(tc.path, "?")[0], "protocol": tc.protocol}
			if tc.code != "" { // the rpc lines' names: "invalid_argument" for the label's "InvalidArgument"
				want["code"] = codeNames[tc.code]
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("line's %s = %v, want %v (%v)", k, line[k], v, line)
				}
			}
			if peer, _ := line["peer"].(string); !strings.HasPrefix(peer, "127.0.0.1:") {
				t.Errorf("line's peer = %v, want the client's address", line["peer"])
			}
			// Over HTTP/1.1 kit echoed the client's id before the
			// handler; over HTTP/2 the call got none.
			if id, _ := line["request_id"].(string); !h2 && id != "client-id-1" {
				t.Errorf("line's request_id = %q, want client-id-1 (%v)", id, line)
			}
			if tc.code != "" {
				if msg, _ := line["error"].(string); msg == "" {
					t.Errorf("line without the error: %v", line)
				}
			} else if code, ok := line["code"]; ok {
				// A 415 or a 405 has no code: the line names none,
				// never "ok".
				t.Errorf("line's code = %v, want none (%v)", code, line)
			}
			if msg, _ := line["error"].(string); tc.errorHas != "" && !strings.Contains(msg, tc.errorHas) {
				t.Errorf("line's error = %q, want it to say %q (%v)", msg, tc.errorHas, line)
			}
		})
	}
}

// A Connect unary call from connect-go's client whose body is over
// MaxRequestBytes is logged and counted with its code, resource_exhausted,
// and the message its client got, in JSON and protobuf, over HTTP/1.1 and
// h2c: one that says its size, which kit answers itself before the chain,
// and one sent gzipped, which connect refuses once it has decompressed
// more than the limit. Their lines had neither, and their counter no
// grpc_code (the gzipped one's until connect's Connect answers were read
// back).
func TestRejectedConnectCallHasItsCode(t *testing.T) {
	t.Parallel()
	for _, codec := range []string{"json", "proto"} {
		for _, gzipped := range []bool{false, true} {
			name := codec
			if gzipped {
				name += "/gzip"
			}
			runRejected(t, name, func(t *testing.T, srv *kittest.Server, client *http.Client, logs *syncBuffer, _ bool) {
				var opts []connect.ClientOption
				if codec == "json" {
					opts = append(opts, connect.WithProtoJSON())
				}
				if gzipped {
					opts = append(opts, connect.WithSendGzip())
				}
				ping := pingv1connect.NewPingServiceClient(client, srv.URL, opts...)
				_, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: strings.Repeat("a", 2048)}))
				if connect.CodeOf(err) != connect.CodeResourceExhausted {
					t.Fatalf("Ping with 2 KiB of text: %v, want resource_exhausted", err)
				}
				labels := map[string]string{
					"grpc_service": "connectkit.ping.v1.PingService", "grpc_method": "Ping",
					"protocol": "connect", "grpc_code": "ResourceExhausted",
				}
				line := rejectedOnce(t, srv, logs, labels)
				if line["code"] != "resource_exhausted" {
					t.Errorf("line's code = %v, want resource_exhausted (%v)", line["code"], line)
				}
				var e *connect.Error
				if errors.As(err, &e) && line["error"] != e.Message() {
					t.Errorf("line's error = %q, want the client's message %q", line["error"], e.Message())
				}
			})
		}
	}
}

// A REST call that connect answers before kit's chain (a body over
// MaxRequestBytes, JSON that does not decode) is observed as a call of the
// procedure it was turned into, in protocol "rest", with the code and
// message of its google.rpc.Status, over HTTP/1.1 and h2c: it was logged
// with code "ok" and no error, and counted without a code.
func TestRejectedRESTCallsAreObserved(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body     string
		status         int
		code, lineCode string // grpc_code label; the line's code
		message        string // in the line's error
	}{
		{name: "body over MaxRequestBytes", body: `{"text":"` + strings.Repeat("a", 2048) + `"}`,
			status: http.StatusTooManyRequests, code: "ResourceExhausted", lineCode: "resource_exhausted", message: "KIT_MAX_REQUEST_BYTES"},
		{name: "JSON that does not decode", body: `{"number":`,
			status: http.StatusBadRequest, code: "InvalidArgument", lineCode: "invalid_argument", message: "EOF"},
	}
	for _, tc := range cases {
		runRejected(t, tc.name, func(t *testing.T, srv *kittest.Server, client *http.Client, logs *syncBuffer, h2 bool) {
			res, body := restCall(t, client, http.MethodPost, srv.URL+"/v1/ping", tc.body, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("POST /v1/ping = %d %s, want %d", res.StatusCode, body, tc.status)
			}
			labels := map[string]string{
				"grpc_service": "connectkit.ping.v1.PingService", "grpc_method": "Ping",
				"protocol": "rest", "grpc_code": tc.code,
			}
			if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", nil); n != 1 {
				t.Errorf("kit_rejected_calls_total = %v in all, want 1", n)
			}
			line := rejectedOnce(t, srv, logs, labels)
			want := map[string]any{"level": "WARN", "procedure": pingPath, "protocol": "rest", "code": tc.lineCode}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("line's %s = %v, want %v (%v)", k, line[k], v, line)
				}
			}
			if msg, _ := line["error"].(string); !strings.Contains(msg, tc.message) {
				t.Errorf("line's error = %q, want it to name %q (%v)", msg, tc.message, line)
			}
		})
	}
}

// A REST request that vanguard refuses before it makes a call of a method
// (a route's path with another method, a type it does not take, a path
// variable that does not parse) is observed too, of no procedure: its
// labels name none, its line the HTTP method, path and status.
func TestRefusedRESTRequestsAreObserved(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, path, body, contentType string
		status                                int
		code, lineCode                        string // grpc_code label; the line's code
		message                               string // in the line's error
	}{
		{name: "another method", method: http.MethodPut, path: "/v1/ping/1",
			status: http.StatusMethodNotAllowed, code: "Unimplemented", lineCode: "unimplemented",
			message: `method "PUT" not allowed: the path takes GET,HEAD`},
		{name: "type not taken", method: http.MethodPost, path: "/v1/ping", body: "number=1", contentType: "text/plain",
			status: http.StatusUnsupportedMediaType, code: "InvalidArgument", lineCode: "invalid_argument",
			message: `unsupported content type "text/plain": a REST route takes a JSON body`},
		{name: "path variable that does not parse", method: http.MethodGet, path: "/v1/ping/seven",
			status: http.StatusBadRequest, code: "InvalidArgument", lineCode: "invalid_argument", message: `invalid parameter "number"`},
	}
	for _, tc := range cases {
		runRejected(t, tc.name, func(t *testing.T, srv *kittest.Server, client *http.Client, logs *syncBuffer, h2 bool) {
			var header http.Header
			if tc.contentType != "" {
				header = http.Header{"Content-Type": {tc.contentType}}
			}
			res, body := restCall(t, client, tc.method, srv.URL+tc.path, tc.body, header)
			if res.StatusCode != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, res.StatusCode, body, tc.status)
			}
			// The answer is google.rpc.Status JSON with the code counted,
			// as every REST error's, not vanguard's plain text.
			var status struct{ Code int }
			if ct := res.Header.Get("Content-Type"); ct != "application/json" || json.Unmarshal([]byte(body), &status) != nil ||
				connect.Code(status.Code).String() != codeNames[tc.code] {
				t.Errorf("%s %s = %s %s, want google.rpc.Status JSON of code %s", tc.method, tc.path, ct, body, tc.code)
			}
			if allow := res.Header.Get("Allow"); tc.status == http.StatusMethodNotAllowed && allow != "GET,HEAD" {
				t.Errorf("%s %s: Allow %q, want GET,HEAD", tc.method, tc.path, allow)
			}
			labels := map[string]string{"grpc_service": "", "grpc_method": "", "protocol": "rest", "grpc_code": tc.code}
			line := rejectedOnce(t, srv, logs, labels)
			want := map[string]any{"level": "WARN", "protocol": "rest", "method": tc.method, "path": strings.Split(tc.path, "?")[0],
				"http_status": float64(tc.status)}
			if tc.lineCode != "" {
				want["code"] = tc.lineCode
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("line's %s = %v, want %v (%v)", k, line[k], v, line)
				}
			}
			if _, ok := line["procedure"]; ok {
				t.Errorf("line names a procedure: %v", line)
			}
			if msg, _ := line["error"].(string); !strings.Contains(msg, tc.message) {
				t.Errorf("line's error = %q, want it to name %q (%v)", msg, tc.message, line)
			}
		})
	}
}

// The calls the chain sees, those that fail included, and the calls to a
// method nothing serves (kit_unknown_procedure_calls_total's) are not
// rejected calls.
func TestServedCallsAreNotRejected(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv := newPingServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	for _, p := range srv.Protocols() {
		{
			client := newPingClient(srv, p.Client, p.Options...)
			if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			_, err := client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)}))
			if connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("%s: Fail = %v", p.Name, err)
			}
			// A validation error: the chain refuses it.
			if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: -1})); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("%s: Ping(-1) = %v", p.Name, err)
			}
			stream, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 2}))
			if err != nil {
				t.Fatalf("%s: CountUp: %v", p.Name, err)
			}
			for stream.Receive() {
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("%s: CountUp: %v", p.Name, err)
			}
			stream.Close()
		}
	}
	// REST calls the chain sees, one that it refuses (validation) too.
	for _, body := range []string{`{"number":"1"}`, `{"number":"-1"}`} {
		if res, b := restCall(t, srv.HTTP1Client(), http.MethodPost, srv.URL+"/v1/ping", body, nil); res.StatusCode >= 500 {
			t.Fatalf("POST /v1/ping %s = %d %s", body, res.StatusCode, b)
		}
	}
	// A REST request that no route matches is not a call.
	if res, b := restCall(t, srv.HTTP1Client(), http.MethodGet, srv.URL+"/v1/nothing", "", nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /v1/nothing = %d %s", res.StatusCode, b)
	}
	status, _ := post(t, srv.HTTP1Client(), srv.URL+"/connectkit.ping.v1.PingService/Nope", strings.NewReader("{}"), "Content-Type", "application/json")
	if status != http.StatusNotFound {
		t.Fatalf("unknown method: %d", status)
	}
	if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", nil); n != 0 {
		t.Errorf("kit_rejected_calls_total = %v, want 0", n)
	}
	if lines := logLines(t, &logs, rejectedMsg); len(lines) != 0 {
		t.Errorf("%d %q lines, want none: %v", len(lines), rejectedMsg, lines)
	}
}

// With a pattern that turns kit's routing shortcut off, calls reach their
// service through the ServeMux, without the request id written before the
// handler: they are observed all the same, a Connect call with its code
// and message, which kit's writer records on that path too (it was not
// used there, and such calls' lines and counter had no code), and the
// other handlers' answers are not calls.
func TestRejectedCallsThroughTheServeMux(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
		srv.Mount("GET /static/", http.NotFoundHandler())
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
		if status, _ := post(t, client, srv.URL+pingPath, strings.NewReader("{bad"), "Content-Type", "application/json"); status != http.StatusBadRequest {
			t.Fatalf("malformed JSON: %d", status)
		}
		if status, _ := post(t, client, srv.URL+pingPath, strings.NewReader(`{"number":1}`), "Content-Type", "application/json"); status != http.StatusOK {
			t.Fatalf("Ping: %d", status)
		}
		res, err := client.Get(srv.URL + "/static/x")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	labels := map[string]string{"grpc_method": "Ping", "protocol": "connect", "grpc_code": "InvalidArgument"}
	if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", labels); n != 2 {
		t.Errorf("kit_rejected_calls_total%v = %v, want 2", labels, n)
	}
	if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", nil); n != 2 {
		t.Errorf("kit_rejected_calls_total = %v, want 2", n)
	}
	lines := logLines(t, &logs, rejectedMsg)
	if len(lines) != 2 {
		t.Fatalf("%d %q lines, want 2; logs:\n%s", len(lines), rejectedMsg, logs.String())
	}
	for _, line := range lines {
		if line["code"] != "invalid_argument" || line["error"] == nil || line["error"] == "" {
			t.Errorf("line %v, want code invalid_argument and connect's message", line)
		}
	}
}

// runRejected runs test as the subtests name/http1 and name/h2c, in
// parallel, each with its own ping server whose MaxRequestBytes is 1 KiB
// and whose JSON log lines go to logs, and that server's client of the
// protocol.
func runRejected(t *testing.T, name string, test func(t *testing.T, srv *kittest.Server, client *http.Client, logs *syncBuffer, h2 bool)) {
	for _, h2 := range []bool{false, true} {
		sub := name + "/http1"
		if h2 {
			sub = name + "/h2c"
		}
		t.Run(sub, func(t *testing.T) {
			t.Parallel()
			logs := new(syncBuffer)
			srv := newPingServer(t, kit.Config{MaxRequestBytes: 1024}, nil,
				kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
			client := srv.HTTP1Client()
			if h2 {
				client = srv.HTTP2Client()
			}
			test(t, srv, client, logs, h2)
		})
	}
}

// rejectedOnce checks that srv counted one rejected call with labels, that
// its chain saw none, and that logs hold one line of it, which it returns.
func rejectedOnce(t *testing.T, srv *kittest.Server, logs *syncBuffer, labels map[string]string) map[string]any {
	t.Helper()
	if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", labels); n != 1 {
		t.Errorf("kit_rejected_calls_total%v = %v, want 1", labels, n)
	}
	if n := counterValue(t, srv.Registry(), "grpc_server_started_total", nil); n != 0 {
		t.Errorf("grpc_server_started_total = %v: the chain saw the call", n)
	}
	lines := logLines(t, logs, rejectedMsg)
	if len(lines) != 1 {
		t.Fatalf("%d %q lines, want 1; logs:\n%s", len(lines), rejectedMsg, logs.String())
	}
	return lines[0]
}

// The answers of a handler the application mounted at a procedure's path
// (a page, a success), or that upgrades a request at a service's path to
// a WebSocket, are not calls that connect refused: neither counted in
// kit_rejected_calls_total nor logged as rejected, where every one of
// them was, with no code. A call that connect refuses on the same server
// still is.
func TestOwnHandlersAtProcedurePathsAreNotRejected(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		_, connectHandler := pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...)
		srv.Mount("/connectkit.ping.v1.PingService/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") != "" {
				interfacesHandler(w, r)
				return
			}
			connectHandler.ServeHTTP(w, r)
		}))
		srv.Mount("/connectkit.ping.v1.PingService/Fail", interfacesHandler)
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	failPath := srv.URL + "/connectkit.ping.v1.PingService/Fail"
	for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
		res, err := client.Get(failPath)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if status, body := post(t, client, failPath, strings.NewReader("{}"), "Content-Type", "application/json"); status != http.StatusOK || !strings.HasPrefix(body, "hijacker=") {
			t.Fatalf("POST to the handler at Fail's path: %d %q", status, body)
		}
	}
	conn := srv.Dial(t)
	if _, err := io.WriteString(conn, "GET /connectkit.ping.v1.PingService/Ping HTTP/1.1\r\nHost: kit\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); res.StatusCode != http.StatusSwitchingProtocols || line != "hello\n" {
		t.Fatalf("upgrade at a service's path: %s, echoed %q (%v)", res.Status, line, err)
	}
	// Refused by connect: counted, after the answers above.
	if status, _ := post(t, srv.HTTP1Client(), srv.URL+pingPath, strings.NewReader("{bad"), "Content-Type", "application/json"); status != http.StatusBadRequest {
		t.Fatalf("malformed JSON: %d", status)
	}
	labels := map[string]string{"grpc_method": "Ping", "grpc_code": "InvalidArgument"}
	if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", labels); n != 1 {
		t.Errorf("kit_rejected_calls_total%v = %v, want 1", labels, n)
	}
	if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", nil); n != 1 {
		t.Errorf("kit_rejected_calls_total = %v, want 1 (the malformed call's): the handlers' answers were counted", n)
	}
	if lines := logLines(t, &logs, rejectedMsg); len(lines) != 1 {
		t.Errorf("%d %q lines, want 1: %v", len(lines), rejectedMsg, lines)
	}
}

// connect refuses a bidi stream over HTTP/1.1 with a bare 505 in every
// protocol, and a method it does not serve with a bare 405: each is a
// rejected call of its request's protocol (a GET's Connect), with no
// code. Over HTTP/1.1 kit reads a gRPC or gRPC-Web answer's status
// without recording it, so the 505 of those two went uncounted; and the
// refusals, which carry no content type, were labelled connect.
func TestBareRefusalsAreRejected(t *testing.T) {
	t.Parallel()
	const cumSumPath = "/connectkit.ping.v1.PingService/CumSum"
	for _, tc := range []struct {
		name, method, path, contentType, protocol string
		status                                    int
	}{
		{"bidi/grpc", http.MethodPost, cumSumPath, "application/grpc", "grpc", http.StatusHTTPVersionNotSupported},
		{"bidi/grpcweb", http.MethodPost, cumSumPath, "application/grpc-web+proto", "grpcweb", http.StatusHTTPVersionNotSupported},
		{"bidi/connect", http.MethodPost, cumSumPath, "application/connect+proto", "connect", http.StatusHTTPVersionNotSupported},
		{"PUT/grpc", http.MethodPut, pingPath, "application/grpc", "grpc", http.StatusMethodNotAllowed},
		{"GET/grpc", http.MethodGet, "/connectkit.ping.v1.PingService/Fail", "application/grpc", "connect", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := new(syncBuffer)
			srv := newPingServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader("\x00\x00\x00\x00\x00"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.method == http.MethodGet {
				req.Body, req.ContentLength = http.NoBody, 0
			}
			req.Header.Set("Content-Type", tc.contentType)
			res, err := srv.HTTP1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = readAll(t, res.Body)
			res.Body.Close()
			if res.StatusCode != tc.status {
				t.Fatalf("%s %s over HTTP/1.1: %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
			}
			method := strings.TrimPrefix(tc.path, "/connectkit.ping.v1.PingService/")
			line := rejectedOnce(t, srv, logs, map[string]string{
				"grpc_method": method, "protocol": tc.protocol, "grpc_code": "",
			})
			if line["protocol"] != tc.protocol {
				t.Errorf("line's protocol = %v, want %s (%v)", line["protocol"], tc.protocol, line)
			}
			if code, ok := line["code"]; ok {
				t.Errorf("line's code = %v, want none (%v)", code, line)
			}
		})
	}
}
