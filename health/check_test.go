package health_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connectkit/connectkit/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var _ health.Pinger = (*sql.DB)(nil)

func TestBackgroundCheckServesCachedResult(t *testing.T) {
	t.Parallel()
	h := health.New()
	var db switchable
	mustAdd(t, h, health.Check{Name: "db", Func: db.check, Interval: time.Hour})
	addr := serve(t, h)
	client := grpcClient(t, addr)

	// Pending until the runner has run it.
	code, rep := get(t, "http://"+addr+"/readyz")
	if code != http.StatusServiceUnavailable || rep.Checks[0].Status != "pending" || rep.Checks[0].Mode != "background" {
		t.Fatalf("/readyz before Run = %d %+v, want 503 with db pending", code, rep)
	}
	run(t, h)
	eventually(t, "the first background run", func() bool { return db.calls.Load() == 1 })
	eventually(t, "SERVING", func() bool {
		res, err := client.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{})
		return err == nil && res.GetStatus() == serving
	})

	// Probes read the cached result: the check is not run again, so its
	// new failure is not seen until the next interval.
	db.fail(errors.New("down"))
	for range 5 {
		res, err := client.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != serving {
			t.Fatalf("Check = %v, %v; want the cached SERVING", res.GetStatus(), err)
		}
		if code, _ := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz = %d, want the cached 200", code)
		}
	}
	if n := db.calls.Load(); n != 1 {
		t.Fatalf("background check ran %d times, want 1", n)
	}
}

func TestBackgroundCheckRunsEveryInterval(t *testing.T) {
	t.Parallel()
	h := health.New()
	var db switchable
	mustAdd(t, h, health.Check{Name: "db", Func: db.check, Interval: 10 * time.Millisecond})
	run(t, h)
	client := grpcClient(t, serve(t, h))
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		res, err := client.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetStatus()
	}
	eventually(t, "SERVING", func() bool { return status() == serving })
	db.fail(errors.New("down"))
	eventually(t, "NOT_SERVING", func() bool { return status() == notServing })
	db.pass()
	eventually(t, "SERVING again", func() bool { return status() == serving })
}

func TestCheckAddedWhileRunning(t *testing.T) {
	t.Parallel()
	h := health.New()
	var early, late switchable
	mustAdd(t, h, health.Check{Name: "early", Func: early.check, Interval: time.Hour})
	run(t, h)
	eventually(t, "Run to start", func() bool { return early.calls.Load() == 1 })
	mustAdd(t, h, health.Check{Name: "late", Func: late.check, Interval: time.Hour})
	eventually(t, "the late check to run", func() bool { return late.calls.Load() == 1 })
}

func TestStuckCheckTimesOutAndIsNotPiledUp(t *testing.T) {
	t.Parallel()
	h := health.New()
	release := make(chan struct{})
	var calls atomic.Int64
	mustAdd(t, h, health.Check{
		Name:    "stuck",
		Timeout: 20 * time.Millisecond,
		Func: func(context.Context) error { // ignores ctx, as bad checks do
			calls.Add(1)
			<-release
			return nil
		},
	})
	addr := serve(t, h)
	for range 3 {
		code, rep := get(t, "http://"+addr+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(rep.Checks[0].Error, "timed out after 20ms") {
			t.Fatalf("/readyz = %d %+v, want 503 timed out", code, rep)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("stuck check started %d times, want 1 while stuck", n)
	}
	close(release)
	eventually(t, "recovery once the check returns", func() bool {
		code, _ := get(t, "http://"+addr+"/readyz")
		return code == http.StatusOK
	})
}

func TestPanickingCheckFails(t *testing.T) {
	t.Parallel()
	h := health.New()
	mustAdd(t, h, health.Check{Name: "buggy", Func: func(context.Context) error { panic("nil map") }})
	code, rep := get(t, "http://"+serve(t, h)+"/readyz")
	if code != http.StatusServiceUnavailable || rep.Checks[0].Error != "check panicked: nil map" {
		t.Fatalf("/readyz = %d %+v", code, rep)
	}
}

type fakePinger struct{ err error }

func (p fakePinger) PingContext(context.Context) error { return p.err }

func TestPingCheck(t *testing.T) {
	t.Parallel()
	h := health.New()
	mustAdd(t, h, health.PingCheck("postgres", fakePinger{err: errors.New("connection refused")}))
	mustAdd(t, h, health.PingCheck("redis", fakePinger{}))
	code, rep := get(t, "http://"+serve(t, h)+"/readyz")
	if code != http.StatusServiceUnavailable || rep.Checks[0].Name != "postgres" ||
		rep.Checks[0].Error != "ping: connection refused" || rep.Checks[1].Status != "pass" {
		t.Fatalf("/readyz = %d %+v", code, rep)
	}
}

func TestBadChecksAreRefused(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	tests := []struct {
		name     string
		check    health.Check
		reporter bool
		want     string
	}{
		{name: "no name", check: health.Check{Func: ok}, want: "empty Name"},
		{name: "no func", check: health.Check{Name: "db"}, want: "nil Func"},
		{name: "negative interval", check: health.Check{Name: "db", Func: ok, Interval: -time.Second}, want: "negative Interval -1s"},
		{name: "negative timeout", check: health.Check{Name: "db", Func: ok, Timeout: -time.Second}, want: "negative Timeout -1s"},
		{name: "liveness of a service", check: health.Check{Name: "loop", Func: ok, Liveness: true, Service: profileSvc}, want: "liveness is server-wide"},
		{name: "duplicate", check: health.Check{Name: "taken", Func: ok}, want: `check "taken" is already registered`},
		{name: "reporter with func", check: health.Check{Name: "sub", Func: ok}, reporter: true, want: "a reporter takes no Func"},
		{name: "duplicate reporter", check: health.Check{Name: "taken"}, reporter: true, want: "already registered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := health.New()
			mustAdd(t, h, health.Check{Name: "taken", Func: ok})
			var err error
			if tc.reporter {
				_, err = h.AddReporter(tc.check)
			} else {
				err = h.AddCheck(tc.check)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRunTwiceIsAnError(t *testing.T) {
	t.Parallel()
	h := health.New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Run(ctx); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	if err := h.Run(context.Background()); err == nil {
		t.Fatal("second Run: no error")
	}
}

func TestTransitionsAreLogged(t *testing.T) {
	t.Parallel()
	var out strings.Builder // written synchronously by Report
	h := health.New(health.WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
	rep, err := h.AddReporter(health.Check{Name: "subscriber", Service: profileSvc})
	if err != nil {
		t.Fatal(err)
	}
	rep.Report(nil)
	rep.Report(errors.New("connection lost"))
	rep.Report(errors.New("still lost")) // no new line while failing
	rep.Report(nil)
	rep.Report(nil)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 ||
		!strings.Contains(lines[0], `level=WARN msg="health check failing" check=subscriber service=example.v1.ProfileService critical=true liveness=false error="connection lost"`) ||
		!strings.Contains(lines[1], `level=INFO msg="health check recovered" check=subscriber`) {
		t.Fatalf("logs:\n%s", out.String())
	}
}

// A check that has never passed (a component still starting) is logged at
// Info, and at Warn only once it has failed for the startup grace.
func TestStartingChecksAreNotWarnings(t *testing.T) {
	t.Parallel()
	var out lockedWriter // and by the startup grace's timer
	h := health.New(health.WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
	// A grace no pause of a loaded machine can use up, then none left:
	// 50ms, measured by the clock, was used up between two Reports when
	// the test goroutine was held that long.
	health.SetStartupGrace(h, time.Hour)
	starting, err := h.AddReporter(health.Check{Name: "starting"})
	if err != nil {
		t.Fatal(err)
	}
	starting.Report(errors.New("not started"))
	starting.Report(nil)
	stuck, err := h.AddReporter(health.Check{Name: "stuck"})
	if err != nil {
		t.Fatal(err)
	}
	stuck.Report(errors.New("not started"))
	stuck.Report(errors.New("not started")) // within the grace: no new line
	if strings.Contains(out.String(), "level=WARN") {
		t.Fatalf("a warning within the startup grace:\n%s", out.String())
	}
	health.SetStartupGrace(h, 0)
	stuck.Report(errors.New("not started")) // past the grace: a warning
	stuck.Report(errors.New("not started")) // warned already
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`level=INFO msg="health check not passing yet" check=starting`,
		`level=INFO msg="health check recovered" check=starting`,
		`level=INFO msg="health check not passing yet" check=stuck`,
		`level=WARN msg="health check failing" check=stuck`,
	}
	if len(lines) != len(want) {
		t.Fatalf("logs:\n%s", out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s\nwant %s", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[3], "failing_for=") {
		t.Errorf("the late warning says not for how long: %s", lines[3])
	}
}

func TestEachProbeRunsOnProbeChecksAfresh(t *testing.T) {
	t.Parallel()
	h := health.New()
	var failing atomic.Bool
	if err := h.AddCheck(health.Check{Name: "flappy", Func: func(context.Context) error {
		if failing.Load() {
			return errors.New("down")
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	ready := h.ReadyHandler()
	for i := range 50 {
		failing.Store(i%2 == 1)
		rec := httptest.NewRecorder()
		ready.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if want := []int{http.StatusOK, http.StatusServiceUnavailable}[i%2]; rec.Code != want {
			t.Fatalf("probe %d right after the check changed: %d, want %d", i, rec.Code, want)
		}
	}
}

// lockedWriter is a strings.Builder safe for the log lines a Checker writes
// from its own goroutines.
type lockedWriter struct {
	mu  sync.Mutex
	out strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// A component that reports once that it cannot start, and then nothing
// (a push-model reporter speaks when its state changes), or an on-probe
// check stuck in its first run (never started again until it returns),
// records no second result: it still reaches Warn once it has failed for
// the startup grace, rather than staying at "not passing yet" for good.
func TestStartingChecksWarnWithoutANewResult(t *testing.T) {
	t.Parallel()
	var out lockedWriter
	h := health.New(health.WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
	health.SetStartupGrace(h, 50*time.Millisecond)
	rep, err := h.AddReporter(health.Check{Name: "reported-once"})
	if err != nil {
		t.Fatal(err)
	}
	rep.Report(errors.New("cannot start"))
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	mustAdd(t, h, health.Check{Name: "stuck", Timeout: 10 * time.Millisecond, Func: func(context.Context) error {
		<-block // ignores its context
		return nil
	}})
	res, err := http.Get("http://" + serve(t, h) + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, name := range []string{"reported-once", "stuck"} {
		want := `level=WARN msg="health check failing" check=` + name
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s after the startup grace; logs:\n%s", want, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Once shutting down, a check still starting is not warned of: its
// readiness no longer matters, and the logger's output may be gone (a
// test's, after kittest stopped the server).
func TestNoLateWarningAfterShutdown(t *testing.T) {
	t.Parallel()
	var out lockedWriter
	h := health.New(health.WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
	health.SetStartupGrace(h, 20*time.Millisecond)
	rep, err := h.AddReporter(health.Check{Name: "starting"})
	if err != nil {
		t.Fatal(err)
	}
	rep.Report(errors.New("not started"))
	h.Shutdown()
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(out.String(), "WARN") {
		t.Errorf("logs after Shutdown:\n%s", out.String())
	}
}
