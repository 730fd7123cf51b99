package kit_test

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/authn"
	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// testCaller is what testAuth returns for a good token.
type testCaller struct{ id string }

func (c testCaller) Principal() string { return c.id }

// testAuth lets "Bearer good" in as alice and denies "Bearer denied"
// (PermissionDenied); any other caller is Unauthenticated.
func testAuth(_ context.Context, r *http.Request) (any, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok:
		return nil, authn.Errorf("no bearer token")
	case subtle.ConstantTimeCompare([]byte(token), []byte("good")) == 1:
		return testCaller{id: "alice"}, nil
	case token == "denied":
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("alice only"))
	}
	return nil, errors.New("unknown token")
}

// whoPing answers Ping with the principal of the caller it sees.
type whoPing struct{ pingServer }

func (p *whoPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	c, _ := authn.GetInfo(ctx).(testCaller)
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: c.id}), nil
}

// newAuthServer runs the ping service, answered by whoPing, behind
// testAuth, its JSON log lines in logs.
func newAuthServer(t *testing.T, cfg kit.Config, logs *syncBuffer) *kittest.Server {
	t.Helper()
	return kittest.NewServer(t, cfg, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&whoPing{}, srv.HandlerOptions()...))
	}, kit.WithAuth(testAuth), kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
}

// withToken returns an interceptor that sends token as a bearer token.
func withToken(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

// With WithAuth, a connect client of every protocol is refused
// Unauthenticated without a token and PermissionDenied with one the func
// denies, and its handler sees the caller of a good token.
func TestAuthEveryProtocol(t *testing.T) {
	t.Parallel()
	srv := newAuthServer(t, kit.Config{}, new(syncBuffer))
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			req := func() *connect.Request[pingv1.PingRequest] {
				return connect.NewRequest(&pingv1.PingRequest{Number: 1})
			}
			_, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), req())
			if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "no bearer token") {
				t.Errorf("without a token: %v, want unauthenticated: no bearer token", err)
			}
			_, err = newPingClient(srv, p.Client, append(p.Options, withToken("bad"))...).Ping(t.Context(), req())
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("with a bad token: %v, want unauthenticated", err)
			}
			_, err = newPingClient(srv, p.Client, append(p.Options, withToken("denied"))...).Ping(t.Context(), req())
			if connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Errorf("with a denied token: %v, want permission_denied", err)
			}
			res, err := newPingClient(srv, p.Client, append(p.Options, withToken("good"))...).Ping(t.Context(), req())
			if err != nil || res.Msg.GetText() != "alice" {
				t.Fatalf("with a good token: %v, %v; want the handler to see alice", res, err)
			}
		})
	}
}

// A grpc-go client gets Unauthenticated without a token and is served
// with one; the health service answers it without a token, and
// reflection does not.
func TestAuthGRPCGo(t *testing.T) {
	t.Parallel()
	srv := newAuthServer(t, kit.Config{}, new(syncBuffer))
	conn := grpcConn(t, srv.Addr().String())
	var res pingv1.PingResponse
	err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 1}, &res)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: %v, want Unauthenticated", err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer good")
	if err := conn.Invoke(ctx, grpcPing, &pingv1.PingRequest{Number: 1}, &res); err != nil || res.GetText() != "alice" {
		t.Errorf("with a good token: %v, %q; want alice", err, res.GetText())
	}
	check, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || check.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check without a token: %v, %v; want SERVING", check, err)
	}
	if err := reflectionList(t.Context(), conn); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without a token: %v, want Unauthenticated", err)
	}
	if err := reflectionList(ctx, conn); err != nil {
		t.Errorf("reflection with a good token: %v", err)
	}
}

// reflectionList lists the services over conn with server reflection.
func reflectionList(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = stream.CloseSend() }()
	err = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	// On io.EOF the server has ended the stream (a refusal, answered
	// before the request is read): Recv has its status.
	_, err = stream.Recv()
	return err
}

// Plain HTTP clients get each protocol's own form of the refusal: Connect
// JSON with 401 or 403, and over a REST route google.rpc.Status JSON with
// the same status; a good token is served.
func TestAuthHTTP(t *testing.T) {
	t.Parallel()
	srv := newAuthServer(t, kit.Config{}, new(syncBuffer))
	cases := []struct {
		name, url, body string
		token           string
		status          int
		code            any // the body's: a Connect name or a google.rpc.Code number
	}{
		{name: "Connect JSON without a token", url: pingPath, body: `{"number":1}`, status: http.StatusUnauthorized, code: "unauthenticated"},
		{name: "Connect JSON denied", url: pingPath, body: `{"number":1}`, token: "denied", status: http.StatusForbidden, code: "permission_denied"},
		{name: "Connect JSON with a token", url: pingPath, body: `{"number":1}`, token: "good", status: http.StatusOK},
		{name: "REST without a token", url: "/v1/ping", body: `{"number":"1"}`, status: http.StatusUnauthorized, code: float64(16)},
		{name: "REST denied", url: "/v1/ping", body: `{"number":"1"}`, token: "denied", status: http.StatusForbidden, code: float64(7)},
		{name: "REST with a token", url: "/v1/ping", body: `{"number":"1"}`, token: "good", status: http.StatusOK},
	}
	for _, tc := range cases {
		for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
			header := http.Header{"Content-Type": {"application/json"}}
			if tc.token != "" {
				header.Set("Authorization", "Bearer "+tc.token)
			}
			res, body := restCall(t, client, http.MethodPost, srv.URL+tc.url, tc.body, header)
			if res.StatusCode != tc.status {
				t.Fatalf("%s: %d %s, want %d", tc.name, res.StatusCode, body, tc.status)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%s: body %q: %v", tc.name, body, err)
			}
			if tc.status == http.StatusOK {
				if got["text"] != "alice" {
					t.Errorf("%s: %s, want the handler to see alice", tc.name, body)
				}
			} else if got["code"] != tc.code {
				t.Errorf("%s: body %s, want code %v", tc.name, body, tc.code)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: Content-Type %q, want application/json", tc.name, ct)
			}
		}
	}
}

// A refused call is logged once at warn and counted once in
// kit_rejected_calls_total with its protocol and code, over HTTP/1.1 and
// h2c, and the chain never sees it.
func TestAuthRejectedCallsAreObserved(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, protocol string
		call           func(t *testing.T, srv *kittest.Server, client *http.Client)
	}{
		{name: "connect", protocol: "connect", call: func(t *testing.T, srv *kittest.Server, client *http.Client) {
			_, _ = newPingClient(srv, client).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
		}},
		{name: "grpcweb", protocol: "grpcweb", call: func(t *testing.T, srv *kittest.Server, client *http.Client) {
			_, _ = newPingClient(srv, client, connect.WithGRPCWeb()).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
		}},
		{name: "connect stream", protocol: "connect", call: func(t *testing.T, srv *kittest.Server, client *http.Client) {
			stream, err := newPingClient(srv, client).CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
			if err == nil {
				for stream.Receive() {
				}
				_ = stream.Close()
			}
		}},
		{name: "rest", protocol: "rest", call: func(t *testing.T, srv *kittest.Server, client *http.Client) {
			_, _ = restCall(t, client, http.MethodPost, srv.URL+"/v1/ping", `{"number":"1"}`, nil)
		}},
	}
	for _, tc := range cases {
		for _, h2 := range []bool{false, true} {
			name := tc.name + "/http1"
			if h2 {
				name = tc.name + "/h2c"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				logs := new(syncBuffer)
				srv := newAuthServer(t, kit.Config{}, logs)
				client := srv.HTTP1Client()
				if h2 {
					client = srv.HTTP2Client()
				}
				tc.call(t, srv, client)
				method := "Ping"
				if tc.name == "connect stream" {
					method = "CountUp"
				}
				labels := map[string]string{
					"grpc_service": "connectkit.ping.v1.PingService", "grpc_method": method,
					"protocol": tc.protocol, "grpc_code": "Unauthenticated",
				}
				if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", nil); n != 1 {
					t.Errorf("kit_rejected_calls_total = %v in all, want 1", n)
				}
				line := rejectedOnce(t, srv, logs, labels)
				want := map[string]any{"level": "WARN", "protocol": tc.protocol, "code": "unauthenticated", "error": "no bearer token"}
				for k, v := range want {
					if line[k] != v {
						t.Errorf("line's %s = %v, want %v (%v)", k, line[k], v, line)
					}
				}
				if id, _ := line["request_id"].(string); id == "" {
					t.Errorf("line without a request_id: %v", line)
				}
			})
		}
	}
}

// A served call's rpc line names the principal of its caller.
func TestAuthPrincipalLogged(t *testing.T) {
	t.Parallel()
	logs := new(syncBuffer)
	srv := newAuthServer(t, kit.Config{}, logs)
	_, err := newPingClient(srv, srv.HTTP2Client(), withToken("good")).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	lines := logLines(t, logs, "rpc")
	if len(lines) != 1 || lines[0]["principal"] != "alice" {
		t.Fatalf("rpc lines %v, want one with principal alice", lines)
	}
	if strings.Contains(logs.String(), "good") {
		t.Errorf("the token is in the log:\n%s", logs)
	}
}

// CORS preflights, which browsers send without credentials, are answered
// with WithAuth on.
func TestAuthCORSPreflight(t *testing.T) {
	t.Parallel()
	srv := newAuthServer(t, kit.Config{CORSAllowedOrigins: []string{"https://app.example"}}, new(syncBuffer))
	req, err := http.NewRequest(http.MethodOptions, srv.URL+pingPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	res, err := srv.HTTP1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode >= 300 || !containsFold(res.Header.Get("Access-Control-Allow-Headers"), "authorization") {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
}

// A panic in the func is the call's Internal error, "internal error" and
// nothing of the panic to the caller, in every protocol; the rejected line
// has the panic's value and stack, and the connection serves on.
func TestAuthPanic(t *testing.T) {
	t.Parallel()
	logs := new(syncBuffer)
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&whoPing{}, srv.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), kit.WithAuth(func(ctx context.Context, r *http.Request) (any, error) {
		if r.Header.Get("Authorization") == "Bearer boom" {
			var claims map[string]int
			//lint:ignore SA5000 the bug this test makes on purpose: the func panics
			claims["calls"]++ // a bug in the func: a nil map
		}
		return testAuth(ctx, r)
	}))
	for _, p := range srv.Protocols() {
		_, err := newPingClient(srv, p.Client, append(p.Options, withToken("boom"))...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeInternal || ce.Message() != "internal error" {
			t.Errorf("%s: a panicking func: %v, want internal: internal error", p.Name, err)
		}
		res, err := newPingClient(srv, p.Client, append(p.Options, withToken("good"))...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		if err != nil || res.Msg.GetText() != "alice" {
			t.Errorf("%s: after a panic, a good call: %v, %v", p.Name, res, err)
		}
	}
	if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", map[string]string{"grpc_code": "Internal"}); n != float64(len(srv.Protocols())) {
		t.Errorf("kit_rejected_calls_total{grpc_code=\"Internal\"} = %v, want %d", n, len(srv.Protocols()))
	}
	lines := logLines(t, logs, "rpc rejected before the interceptor chain")
	if len(lines) == 0 {
		t.Fatal("no rejected line")
	}
	for _, line := range lines {
		stack, _ := line["stack"].(string)
		if line["code"] != "internal" || line["panic"] != "assignment to entry in nil map" || !strings.Contains(stack, "TestAuthPanic") {
			t.Errorf("rejected line %v, want code internal, the panic and its stack", line)
		}
	}
	if strings.Contains(logs.String(), "panic serving") {
		t.Errorf("net/http recovered the panic:\n%s", logs)
	}
}

// The callers WithAuth refuses take nothing of KIT_RATE_LIMIT's bucket or
// KIT_MAX_INFLIGHT's places, which sit in the chain after it: a flood of
// them leaves a good caller its call.
func TestAuthRefusalsSpareTheRateLimit(t *testing.T) {
	t.Parallel()
	srv := newAuthServer(t, kit.Config{RateLimit: 0.001, RateLimitBurst: 1, MaxInFlight: 1}, new(syncBuffer))
	client := newPingClient(srv, srv.HTTP2Client())
	for range 20 {
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("without a token: %v, want unauthenticated", err)
		}
	}
	good := newPingClient(srv, srv.HTTP2Client(), withToken("good"))
	if _, err := good.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Errorf("a good caller after 20 refused: %v, want served", err)
	}
	if _, err := good.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("a good caller's second call: %v, want resource_exhausted (the limit is on)", err)
	}
}

// Every route to a method is authenticated: a Connect GET, whose message
// is in its URL, a REST route's primary binding and its
// additional_bindings; and a stream's caller once, before its first
// message is read.
func TestAuthEveryRoute(t *testing.T) {
	t.Parallel()
	srv := newAuthServer(t, kit.Config{}, new(syncBuffer))
	for _, tc := range []struct {
		name, method, url, body string
		status                  int
	}{
		{name: "Connect GET", method: http.MethodGet, url: pingPath + "?encoding=json&message=%7B%22number%22%3A1%7D", status: http.StatusUnauthorized},
		{name: "REST GET", method: http.MethodGet, url: "/v1/ping/1", status: http.StatusUnauthorized},
		{name: "REST additional binding", method: http.MethodPost, url: "/v1/ping", body: `{"number":"1"}`, status: http.StatusUnauthorized},
	} {
		for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
			for _, token := range []string{"", "good"} {
				header := http.Header{}
				if tc.body != "" {
					header.Set("Content-Type", "application/json")
				}
				want := tc.status
				if token != "" {
					header.Set("Authorization", "Bearer "+token)
					want = http.StatusOK
				}
				res, body := restCall(t, client, tc.method, srv.URL+tc.url, tc.body, header)
				if res.StatusCode != want {
					t.Errorf("%s with token %q: %d %s, want %d", tc.name, token, res.StatusCode, body, want)
				}
			}
		}
	}
}

// A stream's caller is authenticated once, whatever it sends.
func TestAuthStreamOnce(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&whoPing{}, srv.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.DiscardHandler)), kit.WithAuth(func(ctx context.Context, r *http.Request) (any, error) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer good" {
			return nil, errors.New("no")
		}
		return nil, nil
	}))
	for _, p := range srv.Protocols() {
		if strings.HasSuffix(p.Name, "/http1") { // no bidi streams over HTTP/1.1
			continue
		}
		before := calls.Load()
		stream := newPingClient(srv, p.Client, append(p.Options, withStreamToken("good"))...).CumSum(t.Context())
		for i := range 3 {
			if err := stream.Send(&pingv1.CumSumRequest{Number: int64(i)}); err != nil {
				t.Fatalf("%s: send: %v", p.Name, err)
			}
			if _, err := stream.Receive(); err != nil {
				t.Fatalf("%s: receive: %v", p.Name, err)
			}
		}
		_ = stream.CloseRequest()
		_ = stream.CloseResponse()
		if n := calls.Load() - before; n != 1 {
			t.Errorf("%s: func ran %d times for a stream, want 1", p.Name, n)
		}
	}
}

// withStreamToken returns an interceptor that sends token as a bearer
// token on streams.
func withStreamToken(token string) connect.ClientOption {
	return connect.WithInterceptors(streamToken(token))
}

// streamToken sets a stream's bearer token.
type streamToken string

func (s streamToken) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }
func (s streamToken) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(s))
		return conn
	}
}
func (s streamToken) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// An error of the func that is not a *connect.Error (a token service's
// dial error, say) refuses the call Unauthenticated with nothing of its
// text, which goes to the log alone; a *connect.Error in its chain is
// answered as it is.
func TestAuthPlainErrorStaysInTheLog(t *testing.T) {
	t.Parallel()
	logs := new(syncBuffer)
	const internal = `Post "https://auth.internal:8443/introspect": dial tcp 10.1.2.3:8443: connect: connection refused`
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&whoPing{}, srv.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), kit.WithAuth(func(ctx context.Context, r *http.Request) (any, error) {
		if r.Header.Get("Authorization") == "Bearer wrapped" {
			return nil, fmt.Errorf("verifying: %w", authn.Errorf("token expired"))
		}
		return nil, fmt.Errorf("introspecting the token: %w", errors.New(internal))
	}))
	for _, p := range srv.Protocols() {
		_, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeUnauthenticated || ce.Message() != "unauthenticated" {
			t.Errorf("%s: %v, want unauthenticated: unauthenticated", p.Name, err)
		}
		_, err = newPingClient(srv, p.Client, append(p.Options, withToken("wrapped"))...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		if !errors.As(err, &ce) || ce.Code() != connect.CodeUnauthenticated || ce.Message() != "token expired" {
			t.Errorf("%s: wrapped: %v, want unauthenticated: token expired", p.Name, err)
		}
	}
	res, body := restCall(t, srv.HTTP1Client(), http.MethodGet, srv.URL+"/v1/ping/1", "", nil)
	if res.StatusCode != http.StatusUnauthorized || strings.Contains(body, "10.1.2.3") {
		t.Errorf("REST: %d %s, want 401 without the error's text", res.StatusCode, body)
	}
	found := false
	for _, line := range logLines(t, logs, "rpc rejected before the interceptor chain") {
		if line["error"] == "introspecting the token: "+internal {
			found = true
		}
	}
	if !found {
		t.Errorf("no rejected line with the func's error:\n%s", logs)
	}
}

// A refusal's WWW-Authenticate, set on its *connect.Error's metadata,
// reaches the client in every protocol, gRPC's included, and the server
// logs nothing of it: in a gRPC response's trailers, where connect's error
// writer put it, net/http's HTTP/2 server dropped it (RFC 9110 keeps
// authentication fields out of trailers) and logged `ignoring invalid
// trailer "Www-Authenticate"` for each refused call.
func TestAuthChallengeReachesGRPCClients(t *testing.T) {
	t.Parallel()
	logs := new(syncBuffer)
	const challenge = `Bearer realm="test"`
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&whoPing{}, srv.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), kit.WithAuth(func(ctx context.Context, r *http.Request) (any, error) {
		err := authn.Errorf("no bearer token")
		err.Meta().Set("WWW-Authenticate", challenge)
		return nil, err
	}))
	for _, p := range srv.Protocols() {
		_, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeUnauthenticated || ce.Meta().Get("WWW-Authenticate") != challenge {
			t.Errorf("%s: %v with metadata %v, want unauthenticated with WWW-Authenticate %s", p.Name, err, ce.Meta(), challenge)
		}
	}
	var header metadata.MD
	var res pingv1.PingResponse
	err := grpcConn(t, srv.Addr().String()).Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 1}, &res, grpc.Header(&header))
	if status.Code(err) != codes.Unauthenticated || strings.Join(header.Get("www-authenticate"), ",") != challenge {
		t.Errorf("grpc-go: %v with header %v, want Unauthenticated with www-authenticate %s", err, header, challenge)
	}
	if strings.Contains(logs.String(), "invalid trailer") {
		t.Errorf("the server logged a dropped trailer:\n%s", logs)
	}
}

// A page on another origin may read a refusal's WWW-Authenticate: the
// CORS answer to a call WithAuth refused exposes it, beside the
// protocols' own headers, in Connect, gRPC-Web (the browsers' protocols),
// gRPC and REST, after a preflight that allows the call.
func TestAuthChallengeReadableFromPages(t *testing.T) {
	t.Parallel()
	const origin, challenge = "https://app.example", `Bearer realm="test"`
	srv := kittest.NewServer(t, kit.Config{CORSAllowedOrigins: []string{origin}}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&whoPing{}, srv.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))), kit.WithAuth(func(ctx context.Context, r *http.Request) (any, error) {
		err := authn.Errorf("no bearer token")
		err.Meta().Set("WWW-Authenticate", challenge)
		return nil, err
	}))
	if h := preflightHeaders(t, srv.HTTP1Client(), srv.URL, origin, "authorization,connect-protocol-version,content-type"); h.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("preflight: %v", h)
	}
	exposes := func(what string, h http.Header) {
		t.Helper()
		if h.Get("WWW-Authenticate") != challenge || h.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("%s: WWW-Authenticate %q, Access-Control-Allow-Origin %q; want %s for %s",
				what, h.Get("WWW-Authenticate"), h.Get("Access-Control-Allow-Origin"), challenge, origin)
		}
		exposed := h.Get("Access-Control-Expose-Headers")
		for _, name := range []string{"WWW-Authenticate", "Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "X-Request-Id"} {
			if !containsFold(exposed, name) {
				t.Errorf("%s: Access-Control-Expose-Headers %q lacks %s: a page cannot read it", what, exposed, name)
			}
		}
	}
	fromPage := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Origin", origin)
			return next(ctx, req)
		}
	}))
	for _, p := range srv.Protocols() {
		_, err := newPingClient(srv, p.Client, append(p.Options, fromPage)...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeUnauthenticated {
			t.Fatalf("%s: %v, want unauthenticated", p.Name, err)
		}
		exposes(p.Name, ce.Meta())
	}
	resp, body := restCall(t, srv.HTTP1Client(), http.MethodGet, srv.URL+"/v1/ping/1", "", http.Header{"Origin": {origin}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("REST GET /v1/ping/1 = %d %s, want 401", resp.StatusCode, body)
	}
	exposes("REST", resp.Header)
}

// seenPing records the caller that each of its streams' handlers sees.
type seenPing struct {
	pingServer
	seen chan string
}

func (p *seenPing) see(ctx context.Context) {
	c, _ := authn.GetInfo(ctx).(testCaller)
	p.seen <- c.id
}

func (p *seenPing) Sum(ctx context.Context, stream *connect.ClientStream[pingv1.SumRequest]) (*connect.Response[pingv1.SumResponse], error) {
	p.see(ctx)
	return p.pingServer.Sum(ctx, stream)
}

func (p *seenPing) CountUp(ctx context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	p.see(ctx)
	return p.pingServer.CountUp(ctx, req, stream)
}

func (p *seenPing) CumSum(ctx context.Context, stream *connect.BidiStream[pingv1.CumSumRequest, pingv1.CumSumResponse]) error {
	p.see(ctx)
	return p.pingServer.CumSum(ctx, stream)
}

// seeStreams is an interceptor of the application's that records the
// caller each stream's context has.
type seeStreams chan string

func (s seeStreams) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }
func (s seeStreams) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}
func (s seeStreams) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		c, _ := authn.GetInfo(ctx).(testCaller)
		s <- c.id
		return next(ctx, conn)
	}
}

// The handler of a stream of every kind and an interceptor of the
// application's see the caller that the func returned, in every protocol,
// and a stream of a public method none.
func TestAuthInfoReachesStreams(t *testing.T) {
	t.Parallel()
	handler, interceptor := &seenPing{seen: make(chan string, 1)}, make(seeStreams, 1)
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(handler, srv.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.DiscardHandler)), kit.WithInterceptors(interceptor),
		kit.WithAuth(func(ctx context.Context, r *http.Request) (any, error) {
			if r.URL.Path == pingv1connect.PingServiceSumProcedure && r.Header.Get("Authorization") == "" {
				return nil, nil // public without a token
			}
			return testAuth(ctx, r)
		}))
	for _, p := range srv.Protocols() {
		for _, token := range []string{"good", ""} {
			client := newPingClient(srv, p.Client, append(p.Options, withStreamToken(token))...)
			if token == "" {
				client = newPingClient(srv, p.Client, p.Options...)
			}
			want := map[string]string{"good": "alice", "": ""}[token]
			check := func(method string, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s %s with token %q: %v", p.Name, method, token, err)
				}
				if got := <-handler.seen; got != want {
					t.Errorf("%s %s with token %q: the handler saw %q, want %q", p.Name, method, token, got, want)
				}
				if got := <-interceptor; got != want {
					t.Errorf("%s %s with token %q: the interceptor saw %q, want %q", p.Name, method, token, got, want)
				}
			}
			sum := client.Sum(t.Context())
			_ = sum.Send(&pingv1.SumRequest{Number: 1})
			_, err := sum.CloseAndReceive()
			check("Sum", err)
			if token == "" {
				continue // the other methods are not public
			}
			up, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
			if err == nil {
				for up.Receive() {
				}
				err = up.Err()
				_ = up.Close()
			}
			check("CountUp", err)
			if strings.HasSuffix(p.Name, "/http1") { // no bidi streams over HTTP/1.1
				continue
			}
			bidi := client.CumSum(t.Context())
			_ = bidi.Send(&pingv1.CumSumRequest{Number: 1})
			_, err = bidi.Receive()
			_ = bidi.CloseRequest()
			_ = bidi.CloseResponse()
			check("CumSum", err)
		}
	}
}

// When kit did not learn authn's context key (an authn whose GetInfo
// asks its context otherwise, which the probe at init tells), a stream's
// handler still sees its caller, put there with authn.SetInfo: the stream's
// context answered no key, the caller was lost and the handler took the
// stream for a public method's. Not parallel: it changes the key every
// server reads, which the parallel tests, paused until the others end,
// never see.
func TestAuthInfoReachesStreamsWithoutAuthnKey(t *testing.T) {
	kit.SetAuthnInfoKey(t, nil)
	handler, interceptor := &seenPing{seen: make(chan string, 1)}, make(seeStreams, 1)
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(handler, srv.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.DiscardHandler)), kit.WithInterceptors(interceptor), kit.WithAuth(testAuth))
	for _, p := range srv.Protocols() {
		client := newPingClient(srv, p.Client, append(p.Options, withStreamToken("good"))...)
		up, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
		if err == nil {
			for up.Receive() {
			}
			err = up.Err()
			_ = up.Close()
		}
		if err != nil {
			t.Fatalf("%s CountUp: %v", p.Name, err)
		}
		if got := <-handler.seen; got != "alice" {
			t.Errorf("%s CountUp: the handler saw %q, want alice", p.Name, got)
		}
		if got := <-interceptor; got != "alice" {
			t.Errorf("%s CountUp: the interceptor saw %q, want alice", p.Name, got)
		}
	}
}

// A refusal with the error of a call WithAuth's func made to another
// service, returned as is (a wire error), carries none of that service's
// metadata over gRPC, as over the other protocols, in which connect sends
// none of a wire error's: headerFieldsFirst made such an error an error
// of kit's, moving the other service's challenge to the header and
// sending the rest of its metadata (its Challenge-Id, its X-Request-Id)
// in the trailers.
func TestAuthForwardedRefusalSendsNoBackendMetadata(t *testing.T) {
	t.Parallel()
	backend := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&errorPing{err: errChallenge}, srv.HandlerOptions()...))
	})
	tokens := newPingClient(backend, backend.HTTP2Client())
	srv := newPingServer(t, kit.Config{}, nil, kit.WithAuth(func(ctx context.Context, _ *http.Request) (any, error) {
		_, err := tokens.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		return nil, err
	}))
	res, err := grpcCall(t, srv, grpcPing, []byte{8, 1}) // PingRequest{number: 1}
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	// Trailers-Only: the status is in the header.
	if grpcTrailers(res).Get("Grpc-Status") != "16" {
		t.Errorf("header %v, trailers %v, want grpc-status 16", res.Header, res.Trailer)
	}
	for _, k := range []string{"Www-Authenticate", "Challenge-Id"} {
		if res.Header.Get(k) != "" || res.Trailer.Get(k) != "" {
			t.Errorf("header %v and trailers %v, want no %s", res.Header, res.Trailer, k)
		}
	}
	if got := res.Trailer.Values("X-Request-Id"); len(got) != 0 || len(res.Header.Values("X-Request-Id")) != 1 {
		t.Errorf("header %v, trailers %v, want the call's X-Request-Id alone, in the header", res.Header, res.Trailer)
	}
}

// A call that looks like gRPC to kit but that connect does not take for
// one (a GET, a PUT, a Content-Type that is neither application/grpc nor
// application/grpc+codec) gets WithAuth's refusal as connect's ErrorWriter
// writes it for an unknown protocol: Connect JSON with the code's HTTP
// status, over HTTP/1.1 and h2 alike, never a 200 whose body is an error.
func TestAuthRefusalOfAlmostGRPCKeepsItsStatus(t *testing.T) {
	t.Parallel()
	srv := newAuthServer(t, kit.Config{}, new(syncBuffer))
	for _, tc := range []struct{ method, contentType string }{
		{http.MethodPost, "application/grpcx"},
		{http.MethodPost, "application/grpc-foo"},
		{http.MethodPost, "application/grpc; charset=utf-8"},
		{http.MethodPut, "application/grpc"},
		{http.MethodGet, "application/grpc"},
	} {
		for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
			body := ""
			if tc.method != http.MethodGet {
				body = "\x00\x00\x00\x00\x00"
			}
			res, got := restCall(t, client, tc.method, srv.URL+pingPath, body, http.Header{"Content-Type": {tc.contentType}})
			if res.StatusCode != http.StatusUnauthorized || !strings.Contains(got, `"unauthenticated"`) {
				t.Errorf("%s %q over %s = %d %q (header %v, trailers %v), want 401 with Connect JSON unauthenticated", tc.method, tc.contentType, res.Proto, res.StatusCode, got, res.Header, res.Trailer)
			}
		}
	}
}
