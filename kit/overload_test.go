package kit_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// refusedEverywhere calls Ping over every protocol a kittest server
// serves, with grpc-go and with plain JSON over HTTP/1.1, each call
// expected to fail with code (httpStatus for JSON) and a message holding
// message. It returns how many calls it made.
func refusedEverywhere(t *testing.T, srv *kittest.Server, code connect.Code, httpStatus int, message string) int {
	t.Helper()
	calls := 0
	for _, p := range srv.Protocols() {
		_, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
		if connect.CodeOf(err) != code || !strings.Contains(err.Error(), message) {
			t.Errorf("%s: %v, want %s: …%s…", p.Name, err, code, message)
		}
		calls++
	}
	err := grpcConn(t, srv.Addr().String()).Invoke(t.Context(), pingPath, &pingv1.PingRequest{}, &pingv1.PingResponse{})
	if status.Code(err) != codes.Code(code) || !strings.Contains(status.Convert(err).Message(), message) {
		t.Errorf("grpc-go: %v, want %s", err, codes.Code(code))
	}
	calls++
	got, body := post(t, srv.HTTP1Client(), srv.URL+pingPath, strings.NewReader(`{"number": 1}`), "Content-Type", "application/json")
	if got != httpStatus || !strings.Contains(body, `"code":"`+code.String()+`"`) || !strings.Contains(body, message) {
		t.Errorf("JSON: %d %s, want %d %s", got, body, httpStatus, code)
	}
	calls++
	return calls
}

// probesPass checks that the gRPC health service and reflection answer.
func probesPass(t *testing.T, srv *kittest.Server) {
	t.Helper()
	conn := grpcConn(t, srv.Addr().String())
	res, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check: %v %v, want SERVING", res, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err == nil {
		err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	var listed *reflectionpb.ServerReflectionResponse
	if err == nil {
		listed, err = stream.Recv()
		_ = stream.CloseSend()
	}
	if err != nil || len(listed.GetListServicesResponse().GetService()) == 0 {
		t.Errorf("reflection: %v %v, want the services listed", listed, err)
	}
}

// refusalsSeen checks that n refused Ping calls were counted and logged
// with code.
func refusalsSeen(t *testing.T, srv *kittest.Server, logs *syncBuffer, code connect.Code, grpcCode string, n int, message string) {
	t.Helper()
	labels := map[string]string{"grpc_code": grpcCode, "grpc_method": "Ping", "grpc_type": "unary"}
	if got := counterValue(t, srv.Registry(), "grpc_server_handled_total", labels); got != float64(n) {
		t.Errorf("grpc_server_handled_total%v = %v, want %d", labels, got, n)
	}
	logged := 0
	for _, line := range logLines(t, logs, "rpc") {
		if line["procedure"] == pingPath && line["code"] == code.String() {
			logged++
			if e, _ := line["error"].(string); !strings.Contains(e, message) {
				t.Errorf("log line's error %q, want it to name the limit", e)
			}
		}
	}
	if logged != n {
		t.Errorf("%d %s lines logged for Ping, want %d", logged, code, n)
	}
}

func TestRateLimitRefusesOverEveryProtocol(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	bus := mem.New()
	delivered := make(chan struct{}, 10)
	srv := kittest.NewServer(t, kit.Config{RateLimit: 1.0 / 3600, RateLimitBurst: 1}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
		sub, err := pubsub.NewSubscriber(bus, "pings", "audit", func(context.Context, *pingv1.PingRequest) error {
			delivered <- struct{}{}
			return nil
		}, pubsub.WithHandlerOptions(s.HandlerOptions()...))
		if err != nil {
			t.Fatal(err)
		}
		s.Go(sub.Run)
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	t.Cleanup(func() { _ = bus.Close() })

	client := newPingClient(srv, srv.HTTP2Client())
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Fatalf("the burst's one call: %v", err)
	}
	const limit = "rate limit exceeded: 1 call every 1h0m0s, burst 1"
	n := refusedEverywhere(t, srv, connect.CodeResourceExhausted, http.StatusTooManyRequests, limit)
	stream, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("stream: %v, want resource_exhausted", err)
	}

	probesPass(t, srv)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "pings")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
			t.Fatal(err)
		}
		select { // a refused delivery would be retried, and refused again
		case <-delivered:
		case <-time.After(30 * time.Second):
			t.Fatal("a message published was not handled within 30s")
		}
	}
	refusalsSeen(t, srv, &logs, connect.CodeResourceExhausted, "ResourceExhausted", n, limit)
}

func TestMaxInFlightRefusesOverEveryProtocol(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	svc := &stuckPing{entered: make(chan struct{}), release: make(chan struct{})}
	srv := kittest.NewServer(t, kit.Config{MaxInFlight: 2}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	client := newPingClient(srv, srv.HTTP2Client())
	ping := func(text string) error {
		_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: text}))
		return err
	}
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- ping("stuck") }()
		<-svc.entered
	}
	const limit = "too many calls in flight: limit 2"
	n := refusedEverywhere(t, srv, connect.CodeUnavailable, http.StatusServiceUnavailable, limit)
	probesPass(t, srv)

	svc.release <- struct{}{} // one handler returns
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := ping(""); err != nil {
		t.Errorf("a call once a place is free: %v", err)
	}
	svc.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	refusalsSeen(t, srv, &logs, connect.CodeUnavailable, "Unavailable", n, limit)
}

// TestLimitOptionsExempt: a procedure given to interceptors.WithExemptProcedures
// through kit.WithLimitOptions is never refused.
func TestLimitOptionsExempt(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{RateLimit: 1.0 / 3600, RateLimitBurst: 1}, nil,
		kit.WithLimitOptions(interceptors.WithExemptProcedures(pingv1connect.PingServiceFailProcedure)))
	client := newPingClient(srv, srv.HTTP2Client())
	for range 3 {
		_, err := client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeAborted)}))
		if connect.CodeOf(err) != connect.CodeAborted {
			t.Errorf("exempt Fail: %v, want aborted", err)
		}
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Fatalf("the burst's one call: %v", err)
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("second Ping: %v, want resource_exhausted", err)
	}
}

// TestLimitsWithoutDefaultInterceptors: a limit set in the Config holds
// without the default chain too.
func TestLimitsWithoutDefaultInterceptors(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{RateLimit: 1.0 / 3600, RateLimitBurst: 1}, nil, kit.WithoutDefaultInterceptors())
	client := newPingClient(srv, srv.HTTP1Client())
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Fatal(err)
	}
	_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("second call: %v, want resource_exhausted", err)
	}
}

// TestRateLimitRetryAfterReachesPages checks that a web page refused by the
// rate limit can read the refusal's Retry-After: a browser hides from the
// page every response header that CORS does not expose, and for a Connect
// unary call Retry-After is a header.
func TestRateLimitRetryAfterReachesPages(t *testing.T) {
	t.Parallel()
	const origin = "https://app.example.com"
	srv := newPingServer(t, kit.Config{CORSAllowedOrigins: []string{origin}, RateLimit: 1.0 / 3600, RateLimitBurst: 1}, nil)
	if res := pageCall(t, srv, origin); res.StatusCode != http.StatusOK {
		t.Fatalf("the burst's one call: HTTP %d", res.StatusCode)
	}
	res := pageCall(t, srv, origin)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP %d, Retry-After %q: want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if exposed := res.Header.Get("Access-Control-Expose-Headers"); !containsFold(exposed, "Retry-After") {
		t.Errorf("Access-Control-Expose-Headers %q lacks Retry-After: the page cannot read it", exposed)
	}
}
