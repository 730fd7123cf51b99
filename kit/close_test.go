package kit_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"github.com/prometheus/client_golang/prometheus"
)

// TestCloseNeverRun: a program that calls other services without serving
// (a command) makes a Server it never runs, for its HTTP client and client
// chain. Close writes the log lines kit's logger still holds, which such a
// program lost when it exited (its info lines are written every 5 ms:
// `example list -log-level info` printed none of its call's), closes the
// HTTP client, and leaves a server that cannot be run or listen.
func TestCloseNeverRun(t *testing.T) {
	t.Parallel()
	pings := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	})
	var logs syncBuffer
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(kit.NewLogger(&logs, "json", slog.LevelInfo)))
	if err != nil {
		t.Fatal(err)
	}
	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), pings.URL, srv.ClientOptions()...)
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if got := logs.String(); !strings.Contains(got, `"kind":"client","procedure":"/connectkit.ping.v1.PingService/Ping"`) {
		t.Errorf("the log after Close: %q; want the call's client line", got)
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 2})); err == nil {
		t.Error("a call through the HTTP client after Close succeeded")
	}
	if err := srv.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("Run after Close = %v, want an error saying so", err)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Errorf("a second Close = %v, want nil", err)
	}
}

// TestCloseRacingRun: Close and Run of a server, at once. One of them
// wins: either Close fails (Run runs it, and shuts it down) or Run fails
// (after Close), but never both succeed: Run checked Close's mark in
// Listen and then, the lock released, marked the server running, so a
// Close between the two closed its listener and client under a Run that
// went on to serve, failing with the closed listener's error.
func TestCloseRacingRun(t *testing.T) {
	t.Parallel()
	for i := range 200 {
		srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan error, 1)
		go func() { ran <- srv.Run(ctx) }()
		closeErr := srv.Close(t.Context())
		cancel()
		runErr := <-ran
		switch {
		case closeErr == nil && (runErr == nil || !strings.Contains(runErr.Error(), "after Close")):
			t.Fatalf("round %d: Close succeeded, and Run returned %v; want Run to refuse the closed server", i, runErr)
		case closeErr != nil && runErr != nil:
			t.Fatalf("round %d: Close failed (%v), and Run too: %v", i, closeErr, runErr)
		}
	}
}

// TestCloseAfterRun: Close after Run returned does nothing and returns
// nil (Run's shutdown did what Close does), so that a program may defer
// Close whether or not it runs the server; it failed, saying Run runs it.
func TestCloseAfterRun(t *testing.T) {
	t.Parallel()
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := srv.Run(ctx); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Errorf("Close after Run = %v, want nil", err)
	}
}

// TestCloseEndsTheServer: Close of a server never run ends it as Run's
// shutdown would for those who watch it: ShuttingDown's channel is closed
// (a goroutine or a stream selecting on it stops) and readiness says
// NOT_SERVING. Both went on as if the server served.
func TestCloseEndsTheServer(t *testing.T) {
	t.Parallel()
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ready := func() int {
		rec := httptest.NewRecorder()
		srv.Health().ReadyHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("readiness before Close: %d, want 200", code)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	select {
	case <-srv.ShuttingDown():
	default:
		t.Error("ShuttingDown's channel is still open after Close")
	}
	if code := ready(); code != http.StatusServiceUnavailable {
		t.Errorf("readiness after Close: %d, want 503", code)
	}
}

// TestCloseWaitsAgainForTheHTTPClient: a Close whose calls in flight on
// the HTTP client did not finish in time fails saying so, and a later
// Close waits for them again, as http.Server's Shutdown may be called
// again: it fails again while the call is open, and returns nil once it
// ended and the client closed. The second Close returned nil at once, the
// client still open.
func TestCloseWaitsAgainForTheHTTPClient(t *testing.T) {
	t.Parallel()
	var tl tally
	backend := newConnCounter(t, &tl)
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithResolver(kit.NewStaticNames(backend.addr)), kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://svc.test/", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	const want = "calls in flight on the HTTP client did not finish"
	for i := range 2 {
		if err := srv.Close(done); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Close %d with the call open = %v, want an error saying %q", i+1, err, want)
		}
	}
	_ = res.Body.Close()
	if err := srv.Close(t.Context()); err != nil {
		t.Errorf("Close once the call ended = %v, want nil", err)
	}
	if !eventually(func() bool { return backend.conns() == 0 }) {
		t.Errorf("%d connections to the backend still open after Close returned nil", backend.conns())
	}
	if err := srv.Close(done); err != nil {
		t.Errorf("Close after one that returned nil = %v, want nil", err)
	}
}

// TestCloseFlushesTracesPastItsContext: a Close whose context is done (its
// calls on the HTTP client outlasted it) still exports the spans buffered,
// within a second of its own, as Run's shutdown gives them: OpenTelemetry's
// provider, handed the done context, gave up before exporting anything,
// and shuts down once, so no later Close could export them either. Not
// parallel: it sets the environment.
func TestCloseFlushesTracesPastItsContext(t *testing.T) {
	var exports atomic.Int32
	srv := tracedClientServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		exports.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	before := exports.Load()
	done, cancel := context.WithCancel(t.Context())
	cancel()
	_ = srv.Close(done)
	if exports.Load() == before {
		t.Error("Close with its context done exported no span: the client call's span is lost")
	}
}

// TestConcurrentCloseWaitsForTheFlush: a Close called while another still
// exports the spans buffered returns once that export is over, as a
// program that exits when either returns would otherwise lose them: the
// second Close returned nil at once, without flushing (the first does it
// once) and without waiting. Not parallel: it sets the environment. The
// collector holds the export until 200ms after the second Close began;
// a second Close that returned before is the failure (a machine slow
// enough to take longer than that to return would hide it, not fail it).
func TestConcurrentCloseWaitsForTheFlush(t *testing.T) {
	got, release := make(chan struct{}), make(chan struct{})
	var gotOnce sync.Once
	var answered atomic.Bool
	srv := tracedClientServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotOnce.Do(func() { close(got) })
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		answered.Store(true)
		w.WriteHeader(http.StatusOK)
	}))
	first := make(chan error, 1)
	go func() { first <- srv.Close(t.Context()) }()
	<-got // the first Close exports the span
	go func() {
		time.Sleep(200 * time.Millisecond)
		close(release)
	}()
	if err := srv.Close(t.Context()); err != nil {
		t.Errorf("the second Close = %v, want nil", err)
	}
	if !answered.Load() {
		t.Error("the second Close returned while the first still exported the spans")
	}
	if err := <-first; err != nil {
		t.Errorf("the first Close = %v, want nil", err)
	}
}

// TestTraceExportFailureIsLogged: spans the collector refuses are logged
// by the server's logger, as a JSON line among the others, where
// OpenTelemetry's global error handler printed them on stderr with the
// standard library's log ("2026/12/07 12:21:10 traces export: ..."). Not
// parallel: it sets the environment.
func TestTraceExportFailureIsLogged(t *testing.T) {
	var logs syncBuffer
	srv := tracedClientServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no spans here", http.StatusBadRequest)
	}), kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err := srv.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	lines := logLines(t, &logs, "traces export failed")
	if len(lines) != 1 || lines[0]["level"] != "ERROR" || lines[0]["exporter"] != "otlp" ||
		!strings.Contains(fmt.Sprint(lines[0]["error"]), "400") {
		t.Errorf("lines %v, want one ERROR line of the otlp exporter naming its 400\nlogs:\n%s", lines, logs.String())
	}
}

// TestTraceExportFailuresAreCounted: a batch the collector never
// receives, its connections closed as soon as they are accepted, counts
// once in kit_trace_export_failures_total and its span in
// kit_trace_export_failed_spans_total, series at 0 before, where it was
// only an error line. Not parallel: it sets the environment.
func TestTraceExportFailuresAreCounted(t *testing.T) {
	// A collector that is down: it closes every connection it accepts.
	ln := closingListener(t, false)
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "300") // ms: the exporter retries until then
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	srv := tracedClientServerAt(t, "http://"+ln.Addr().String(),
		kit.WithRegistry(reg), kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	otlp := map[string]string{"exporter": "otlp"}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series int
	for _, f := range families {
		if f.GetName() == "kit_trace_export_failures_total" || f.GetName() == "kit_trace_export_failed_spans_total" {
			series += len(f.GetMetric())
		}
	}
	if series != 2 || counterValue(t, reg, "kit_trace_export_failures_total", otlp) != 0 {
		t.Errorf("before any export: %d series of the two counters, want 2, at 0", series)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := counterValue(t, reg, "kit_trace_export_failures_total", otlp); n != 1 {
		t.Errorf("kit_trace_export_failures_total%v = %v, want 1\nlogs:\n%s", otlp, n, logs.String())
	}
	if n := counterValue(t, reg, "kit_trace_export_failed_spans_total", otlp); n != 1 {
		t.Errorf("kit_trace_export_failed_spans_total%v = %v, want 1", otlp, n)
	}
	if lines := logLines(t, &logs, "traces export failed"); len(lines) != 1 || lines[0]["error"] == nil {
		t.Errorf("lines %v, want one naming its error", lines)
	}
}

// tracedClientServer returns a server never run whose spans go to
// collector over OTLP, after one call through its HTTP client, whose span
// is buffered. It sets the environment: its callers cannot be parallel.
func tracedClientServer(t *testing.T, collector http.Handler, opts ...kit.Option) *kit.Server {
	t.Helper()
	otlp := httptest.NewServer(collector)
	t.Cleanup(otlp.Close)
	return tracedClientServerAt(t, otlp.URL, opts...)
}

// tracedClientServerAt is tracedClientServer with the collector at the
// URL endpoint.
func tracedClientServerAt(t *testing.T, endpoint string, opts ...kit.Option) *kit.Server {
	t.Helper()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	pings := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	})
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		append([]kit.Option{kit.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), pings.URL, srv.ClientOptions()...)
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestShutdownSaysWhetherTracesFlushed: Run's shutdown logs "flushed
// traces" only when the last flush sent its spans; when the collector
// refused them, "traces not flushed" at warn with how many, where it
// claimed them flushed after their error line. Not parallel: it sets the
// environment.
func TestShutdownSaysWhetherTracesFlushed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		want     string
		wantSpan bool
	}{
		{"collector takes them", http.StatusOK, "flushed traces", false},
		{"collector refuses them", http.StatusBadRequest, "traces not flushed", true},
		// The flush outlasts the shutdown's time, and the export goes on
		// (the batch span processor's own timeout): how many spans it
		// loses is not known yet.
		{"collector never answers", 0, "traces not flushed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.status == 0 {
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				w.WriteHeader(tc.status)
			}))
			t.Cleanup(otlp.Close)
			t.Cleanup(func() { close(release) }) // before otlp.Close, which waits for the handler
			t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
			var logs syncBuffer
			cfg := kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}
			if tc.status == 0 {
				cfg.ShutdownTimeout = time.Second // the time the flush gets, and the test waits
			}
			srv, err := kit.New(cfg,
				kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			if err := pingOnceAndStop(t, srv); (err != nil) != (tc.status == 0) {
				t.Fatalf("Run = %v, want an error only when the flush did not end", err)
			}
			lines := logLines(t, &logs, tc.want)
			other := map[string]string{"flushed traces": "traces not flushed", "traces not flushed": "flushed traces"}[tc.want]
			if len(lines) != 1 || len(logLines(t, &logs, other)) != 0 {
				t.Fatalf("want one %q line and no %q line\nlogs:\n%s", tc.want, other, logs.String())
			}
			if spans, ok := lines[0]["spans"].(float64); ok != tc.wantSpan || tc.wantSpan && spans < 1 {
				t.Errorf("line %v: want spans (%v)", lines[0], tc.wantSpan)
			}
			if failed := tc.want != "flushed traces"; failed && lines[0]["level"] != "WARN" || tc.status == 0 && lines[0]["error"] == nil {
				t.Errorf("line %v: want it at WARN when the flush failed, with the error when it did not end", lines[0])
			}
		})
	}
}

// TestShutdownCountsUnflushedSpansPerExporter: with two exporters that
// both fail to send the last flush's spans (a collector that refuses
// them, a console on a full disk), "traces not flushed" says how many
// spans each one lost, in a line of its own, where one line counted each
// span once for every exporter. Not parallel: it sets the environment and
// os.Stdout, which the console exporter takes when kit.New builds it.
func TestShutdownCountsUnflushedSpansPerExporter(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full to fail the console exporter's writes: %v", err)
	}
	t.Cleanup(func() { _ = full.Close() })
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	}))
	t.Cleanup(otlp.Close)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp,console")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000") // every span waits for the shutdown's flush
	var logs syncBuffer
	stdout := os.Stdout
	os.Stdout = full
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	os.Stdout = stdout
	if err != nil {
		t.Fatal(err)
	}
	if err := pingOnceAndStop(t, srv); err != nil {
		t.Fatalf("Run = %v", err)
	}
	// What each exporter's error lines say it failed to send.
	failed := map[string]float64{}
	for _, line := range logLines(t, &logs, "traces export failed") {
		exporter, _ := line["exporter"].(string)
		spans, _ := line["spans"].(float64)
		failed[exporter] += spans
	}
	lines := logLines(t, &logs, "traces not flushed")
	got := map[string]float64{}
	for _, line := range lines {
		exporter, _ := line["exporter"].(string)
		spans, _ := line["spans"].(float64)
		got[exporter] += spans
	}
	if len(lines) != 2 || failed["otlp"] < 1 || failed["console"] < 1 ||
		got["otlp"] != failed["otlp"] || got["console"] != failed["console"] {
		t.Fatalf("want one \"traces not flushed\" line for each exporter with the spans its error lines count (%v), got %v\nlogs:\n%s",
			failed, got, logs.String())
	}
	if n := len(logLines(t, &logs, "flushed traces")); n != 0 {
		t.Errorf("%d \"flushed traces\" lines, want none\nlogs:\n%s", n, logs.String())
	}
}

// pingOnceAndStop mounts the ping service on srv, runs it, makes one Ping
// with a plain client (no span of its own), stops it and returns what Run
// returned.
func pingOnceAndStop(t *testing.T, srv *kit.Server) error {
	t.Helper()
	srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	client := pingv1connect.NewPingServiceClient(http.DefaultClient, "http://"+srv.Addr().String())
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	cancel()
	return <-done
}
