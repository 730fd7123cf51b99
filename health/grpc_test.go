package health_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/health"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
	profileSvc = "example.v1.ProfileService"
	otherSvc   = "other.v1.OtherService"
)

func TestGRPCCheckFollowsCriticalCheck(t *testing.T) {
	t.Parallel()
	h := health.New()
	h.AddService(otherSvc)
	var db switchable
	mustAdd(t, h, health.Check{Name: "profiles-db", Service: profileSvc, Func: db.check})
	client := grpcClient(t, serve(t, h))

	expect := func(want map[string]healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for svc, st := range want {
			res, err := client.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("Check(%q): %v", svc, err)
			}
			if res.GetStatus() != st {
				t.Fatalf("Check(%q) = %v, want %v", svc, res.GetStatus(), st)
			}
		}
	}
	expect(map[string]healthpb.HealthCheckResponse_ServingStatus{"": serving, profileSvc: serving, otherSvc: serving})
	db.fail(errors.New("connection refused"))
	// The service's own check fails it and the whole server, not the others.
	expect(map[string]healthpb.HealthCheckResponse_ServingStatus{"": notServing, profileSvc: notServing, otherSvc: serving})
	db.pass()
	expect(map[string]healthpb.HealthCheckResponse_ServingStatus{"": serving, profileSvc: serving, otherSvc: serving})
}

func TestGRPCServerWideCheckFailsEveryService(t *testing.T) {
	t.Parallel()
	h := health.New()
	h.AddService(profileSvc)
	var cache switchable
	mustAdd(t, h, health.Check{Name: "cache", Func: cache.check})
	cache.fail(errors.New("down"))
	client := grpcClient(t, serve(t, h))
	for _, svc := range []string{"", profileSvc} {
		res, err := client.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || res.GetStatus() != notServing {
			t.Fatalf("Check(%q) = %v, %v; want NOT_SERVING", svc, res.GetStatus(), err)
		}
	}
}

func TestGRPCCheckUnknownServiceIsNotFound(t *testing.T) {
	t.Parallel()
	client := grpcClient(t, serve(t, health.New()))
	_, err := client.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Check(unknown) error = %v, want NotFound", err)
	}
}

// watch starts a Watch of svc that lasts at most as long as the test.
func watch(t *testing.T, client healthpb.HealthClient, svc string) healthpb.Health_WatchClient {
	t.Helper()
	stream, err := client.Watch(ctxTimeout(t), &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// recvAll reads the next len(want) Watch messages and compares them.
func recvAll(t *testing.T, stream healthpb.Health_WatchClient, want ...healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	for i, w := range want {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv #%d: %v", i, err)
		}
		if res.GetStatus() != w {
			t.Fatalf("Recv #%d = %v, want %v", i, res.GetStatus(), w)
		}
	}
}

func TestGRPCWatchDeliversEachChange(t *testing.T) {
	t.Parallel()
	h := health.New()
	subscriber, err := h.AddReporter(health.Check{Name: "subscriber"})
	if err != nil {
		t.Fatal(err)
	}
	client := grpcClient(t, serve(t, h))
	stream := watch(t, client, "")
	recvAll(t, stream, notServing) // pending reporter
	subscriber.Report(nil)
	recvAll(t, stream, serving)
	subscriber.Report(errors.New("connection lost"))
	recvAll(t, stream, notServing)
	// Still failing, other error: no message; the next one is the recovery.
	subscriber.Report(errors.New("still lost"))
	subscriber.Report(nil)
	recvAll(t, stream, serving)
}

func TestGRPCWatchSeesOnProbeCheckChanges(t *testing.T) {
	t.Parallel()
	h := health.New()
	h.AddService(profileSvc)
	var db switchable
	mustAdd(t, h, health.Check{Name: "db", Service: profileSvc, Func: db.check})
	addr := serve(t, h)
	client := grpcClient(t, addr)
	stream := watch(t, client, profileSvc)
	recvAll(t, stream, serving)
	db.fail(errors.New("down"))
	// An on-probe check runs when probed: any probe's result reaches every
	// watcher.
	if _, err := client.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	recvAll(t, stream, notServing)
	db.pass()
	if code, _ := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d, want 200", code)
	}
	recvAll(t, stream, serving)
}

// Nothing else probes: Watch runs the on-probe checks itself, as grpc-go's
// client-side health checking, which only watches, needs.
func TestGRPCWatchRunsOnProbeChecksItself(t *testing.T) {
	t.Parallel()
	h := health.New()
	health.SetWatchProbeInterval(h, 20*time.Millisecond)
	h.AddService(profileSvc)
	var db switchable
	mustAdd(t, h, health.Check{Name: "db", Service: profileSvc, Func: db.check})
	stream := watch(t, grpcClient(t, serve(t, h)), profileSvc)
	recvAll(t, stream, serving)
	db.fail(errors.New("down"))
	recvAll(t, stream, notServing)
	db.pass()
	recvAll(t, stream, serving)
}

func TestGRPCWatchUnknownServiceKeepsWatching(t *testing.T) {
	t.Parallel()
	h := health.New()
	client := grpcClient(t, serve(t, h))
	stream := watch(t, client, profileSvc)
	recvAll(t, stream, healthpb.HealthCheckResponse_SERVICE_UNKNOWN)
	h.AddService(profileSvc)
	recvAll(t, stream, serving)
}

func TestShutdownFlipsCheckAndWatchAtOnce(t *testing.T) {
	t.Parallel()
	h := health.New()
	h.AddService(profileSvc)
	addr := serve(t, h)
	client := grpcClient(t, addr)
	overall := watch(t, client, "")
	profile := watch(t, client, profileSvc)
	recvAll(t, overall, serving)
	recvAll(t, profile, serving)

	h.Shutdown()
	recvAll(t, overall, notServing)
	recvAll(t, profile, notServing)
	for _, svc := range []string{"", profileSvc} {
		res, err := client.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || res.GetStatus() != notServing {
			t.Fatalf("Check(%q) after Shutdown = %v, %v; want NOT_SERVING", svc, res.GetStatus(), err)
		}
	}
	// Liveness is not readiness: the process is alive while it drains.
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after Shutdown = %d, want 200", code)
	}
	code, rep := get(t, "http://"+addr+"/readyz")
	if code != http.StatusServiceUnavailable || !rep.ShuttingDown || rep.Status != "NOT_SERVING" {
		t.Fatalf("/readyz after Shutdown = %d %+v, want 503 NOT_SERVING shutting_down", code, rep)
	}
}

func TestCloseWatchesEndsStreams(t *testing.T) {
	t.Parallel()
	h := health.New()
	client := grpcClient(t, serve(t, h))
	stream := watch(t, client, "")
	recvAll(t, stream, serving)
	h.Shutdown()
	h.CloseWatches()
	recvAll(t, stream, notServing)
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after CloseWatches: %v, want EOF", err)
	}
	// A later Watch gets the status, then ends.
	late := watch(t, client, "")
	recvAll(t, late, notServing)
	if _, err := late.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv on a late Watch: %v, want EOF", err)
	}
}

func TestGRPCList(t *testing.T) {
	t.Parallel()
	h := health.New()
	h.AddService(profileSvc)
	var db switchable
	db.fail(errors.New("down"))
	mustAdd(t, h, health.Check{Name: "db", Service: otherSvc, Func: db.check})
	res, err := grpcClient(t, serve(t, h)).List(ctxTimeout(t), &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]healthpb.HealthCheckResponse_ServingStatus)
	for svc, st := range res.GetStatuses() {
		got[svc] = st.GetStatus()
	}
	want := map[string]healthpb.HealthCheckResponse_ServingStatus{"": notServing, profileSvc: serving, otherSvc: notServing}
	if len(got) != len(want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	for svc, st := range want {
		if got[svc] != st {
			t.Fatalf("List = %v, want %v", got, want)
		}
	}
}

func TestConnectClientsInEveryProtocol(t *testing.T) {
	t.Parallel()
	h := health.New()
	h.AddService(profileSvc)
	base := "http://" + serve(t, h)
	protocols := []struct {
		name string
		opts []connect.ClientOption
	}{
		{name: "grpc", opts: []connect.ClientOption{connect.WithGRPC()}},
		{name: "grpcweb", opts: []connect.ClientOption{connect.WithGRPCWeb()}},
		{name: "connect", opts: nil},
		{name: "connect_json", opts: []connect.ClientOption{connect.WithProtoJSON()}},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			hc := h2cClient(t)
			check := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
				hc, base+healthpb.Health_Check_FullMethodName, p.opts...)
			res, err := check.CallUnary(ctxTimeout(t), connect.NewRequest(&healthpb.HealthCheckRequest{Service: profileSvc}))
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.GetStatus() != serving {
				t.Fatalf("Check = %v, want SERVING", res.Msg.GetStatus())
			}
			_, err = check.CallUnary(ctxTimeout(t), connect.NewRequest(&healthpb.HealthCheckRequest{Service: "no.such.Service"}))
			if connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("Check(unknown) error = %v, want not_found", err)
			}
			watch := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
				hc, base+healthpb.Health_Watch_FullMethodName, p.opts...)
			stream, err := watch.CallServerStream(ctxTimeout(t), connect.NewRequest(&healthpb.HealthCheckRequest{Service: profileSvc}))
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			if !stream.Receive() {
				t.Fatalf("Watch: no message: %v", stream.Err())
			}
			if stream.Msg().GetStatus() != serving {
				t.Fatalf("Watch = %v, want SERVING", stream.Msg().GetStatus())
			}
		})
	}
}

// TestConnectJSONSpeaksStandardNames is what a browser or curl does: the
// standard enum names, not grpchealth's "SERVING_STATUS_SERVING".
func TestConnectJSONSpeaksStandardNames(t *testing.T) {
	t.Parallel()
	h := health.New()
	rep, err := h.AddReporter(health.Check{Name: "subscriber"})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + serve(t, h) + healthpb.Health_Check_FullMethodName
	post := func(body string) (int, string) {
		t.Helper()
		res, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := post(`{}`); code != http.StatusOK || body != `{"status":"NOT_SERVING"}` {
		t.Fatalf("pending: %d %s", code, body)
	}
	rep.Report(nil)
	if code, body := post(`{}`); code != http.StatusOK || body != `{"status":"SERVING"}` {
		t.Fatalf("serving: %d %s", code, body)
	}
	if code, body := post(`{"service":"no.such.Service"}`); code != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
		t.Fatalf("unknown service: %d %s", code, body)
	}
}

func TestDescriptorsResolvableForReflection(t *testing.T) {
	t.Parallel()
	// gRPC server reflection (connectrpc.com/grpcreflect) resolves services
	// from protoregistry.GlobalFiles.
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(health.ServiceName)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.ParentFile().Path(); got != "grpc/health/v1/health.proto" {
		t.Fatalf("file = %q, want the standard grpc/health/v1/health.proto", got)
	}
}

func TestWatchFreedWhenClientGoesAway(t *testing.T) {
	t.Parallel()
	h := health.New()
	client := grpcClient(t, serve(t, h))
	ctx, cancel := context.WithCancel(ctxTimeout(t))
	streams := make([]healthpb.Health_WatchClient, 3)
	for i := range streams {
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: []string{"", profileSvc, otherSvc}[i]})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		streams[i] = stream
	}
	if n := health.Watchers(h); n != 3 {
		t.Fatalf("%d watchers, want 3", n)
	}
	cancel()
	eventually(t, "the watchers to go", func() bool { return health.Watchers(h) == 0 })
}
