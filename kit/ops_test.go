package kit_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/connectkit/connectkit/health"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

func TestHealthReflectsMountedServicesAndChecks(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	srv := newPingServer(t, kit.Config{}, nil)
	err := srv.Health().AddCheck(health.Check{Name: "database", Func: func(context.Context) error {
		if failing.Load() {
			return errors.New("connection refused")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	client := healthpb.NewHealthClient(grpcConn(t, srv.Addr().String()))
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		res, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return res.GetStatus()
	}
	for _, service := range []string{"", "connectkit.ping.v1.PingService"} {
		if got := check(service); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", service, got)
		}
	}
	failing.Store(true)
	if got := check("connectkit.ping.v1.PingService"); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("with a failing critical check: %v, want NOT_SERVING", got)
	}
	failing.Store(false)
	if got := check(""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("after recovery: %v, want SERVING", got)
	}
}

// slowStream's CountUp sends 1, waits for release, then sends 2.
type slowStream struct {
	*pingServer
	release chan struct{}
}

func (s *slowStream) CountUp(_ context.Context, _ *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	if err := stream.Send(&pingv1.CountUpResponse{Number: 1}); err != nil {
		return err
	}
	<-s.release
	return stream.Send(&pingv1.CountUpResponse{Number: 2})
}

func TestShutdownReportsNotReadyBeforeItStopsAccepting(t *testing.T) {
	t.Parallel()
	svc := &slowStream{pingServer: &pingServer{}, release: make(chan struct{})}
	srv := kittest.NewServer(t, kit.Config{AdminAddr: "127.0.0.1:0", DrainDelay: 2 * time.Second}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(svc, srv.HandlerOptions()...))
	})
	stream, err := newPingClient(srv, srv.HTTP2Client(), connect.WithGRPC()).CountUp(context.Background(), connect.NewRequest(&pingv1.CountUpRequest{}))
	if err != nil || !stream.Receive() {
		t.Fatalf("stream: %v %v", err, stream.Err())
	}
	watch, err := healthpb.NewHealthClient(grpcConn(t, srv.Addr().String())).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := watch.Recv(); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v; want SERVING", res, err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()

	// Watch and /readyz say NOT_SERVING while the main listener still accepts.
	if res, err := watch.Recv(); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after shutdown began = %v, %v; want NOT_SERVING", res, err)
	}
	waitNotReady(t, srv.AdminURL)
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatalf("main listener closed before the drain delay ended: %v", err)
	}
	c.Close()

	// The open stream still completes.
	close(svc.release)
	if !stream.Receive() || stream.Msg().GetNumber() != 2 || stream.Receive() || stream.Err() != nil {
		t.Fatalf("stream did not complete: %v", stream.Err())
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	level := new(slog.LevelVar)
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))
	srv := newPingServer(t, kit.Config{AdminAddr: "127.0.0.1:0", AdminToken: "s3cret", Pprof: true}, nil,
		kit.WithLogger(logger), kit.WithLogLevel(level))
	srv.MountAdmin("/extra/", "an extra endpoint", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path)
	}))

	do := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.AdminURL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	if code, body := do("GET", "/metrics", "s3cret", ""); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d", code)
	}
	if code, _ := do("GET", "/metrics", "", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without token = %d, want 401", code)
	}
	if code, _ := do("GET", "/debug/pprof/", "s3cret", ""); code != 200 {
		t.Errorf("/debug/pprof/ = %d, want 200", code)
	}
	if code, _ := do("GET", "/readyz", "", ""); code != 200 {
		t.Errorf("/readyz without token = %d, want 200", code)
	}
	if code, body := do("GET", "/extra/path", "s3cret", ""); code != 200 || body != "/path" {
		t.Errorf("/extra/path = %d %q, want 200 and the path without its prefix", code, body)
	}
	if code, _ := do("GET", "/extra/path", "", ""); code != http.StatusUnauthorized {
		t.Errorf("/extra/path without token = %d, want 401", code)
	}
	if _, body := do("GET", "/", "s3cret", ""); !strings.Contains(body, "an extra endpoint") {
		t.Errorf("index page lacks the mounted endpoint: %s", body)
	}

	srv.Logger().Debug("before the change")
	if code, _ := do("PUT", "/debug/loglevel", "wrong", "debug"); code != http.StatusUnauthorized || level.Level() != slog.LevelInfo {
		t.Errorf("PUT with a wrong token = %d, level %v; want 401 and INFO", code, level.Level())
	}
	if code, body := do("PUT", "/debug/loglevel", "s3cret", "debug"); code != 200 {
		t.Fatalf("PUT /debug/loglevel = %d %s", code, body)
	}
	srv.Logger().Debug("after the change")
	if got := logs.String(); strings.Contains(got, "before the change") || !strings.Contains(got, "after the change") {
		t.Errorf("debug lines: %s", got)
	}
}

// A prefix without a trailing slash serves that path alone, and its
// handler sees it as its root, as one under "prefix/" sees "prefix/": it
// saw an empty path, which a ServeMux (pubsub's DeadLetterHandler) answers
// with a redirect to "/", the admin listener's index page.
func TestMountAdminExactPath(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{AdminAddr: "127.0.0.1:0"}, nil)
	srv.MountAdmin("/status", "status", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	for _, tc := range []struct {
		name, path string
		code       int
		body       string
	}{
		{name: "the path", path: "/status", code: http.StatusOK, body: "/"},
		{name: "below it", path: "/status/x", code: http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := http.Get(srv.AdminURL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.code || (tc.code == http.StatusOK && string(b) != tc.body) {
				t.Errorf("GET %s = %d %q, want %d %q", tc.path, res.StatusCode, b, tc.code, tc.body)
			}
		})
	}
}

// waitNotReady polls the admin listener at adminURL until /readyz answers
// 503.
func waitNotReady(t *testing.T, adminURL string) {
	t.Helper()
	for {
		res, err := http.Get(adminURL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusServiceUnavailable {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
