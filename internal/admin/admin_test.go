package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/connectkit/connectkit/health"
	"github.com/connectkit/connectkit/internal/admin"
	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a bytes.Buffer safe for the server's and the test's
// goroutines.
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

// serve serves an admin handler built from cfg on a loopback port and
// returns its base URL.
func serve(tb testing.TB, cfg admin.Config) string {
	tb.Helper()
	h, err := admin.NewHandler(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL
}

// do sends a request with an optional Authorization header and returns the
// status, headers and body.
func do(tb testing.TB, method, url, auth, body string) (int, http.Header, string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

func TestLogLevelChangesAtRunTime(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	level := new(slog.LevelVar) // INFO
	logger := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: level}))
	url := serve(t, admin.Config{Level: level, Logger: logger}) + "/debug/loglevel"

	logger.Debug("before the change")
	if code, _, body := do(t, http.MethodGet, url, "", ""); code != http.StatusOK || body != `{"level":"INFO"}`+"\n" {
		t.Fatalf("GET = %d %s", code, body)
	}
	code, _, body := do(t, http.MethodPut, url, "", "debug\n")
	if code != http.StatusOK || body != `{"level":"DEBUG","previous":"INFO"}`+"\n" {
		t.Fatalf("PUT debug = %d %s", code, body)
	}
	logger.Debug("after the change")

	logs := out.String()
	if strings.Contains(logs, "before the change") {
		t.Error("a debug line was logged before the change")
	}
	if !strings.Contains(logs, "after the change") {
		t.Error("no debug line after the change")
	}
	var change struct {
		Msg        string `json:"msg"`
		From       string `json:"from"`
		To         string `json:"to"`
		RemoteAddr string `json:"remote_addr"`
	}
	for line := range strings.Lines(logs) {
		if err := json.Unmarshal([]byte(line), &change); err != nil {
			t.Fatal(err)
		}
		if change.Msg == "log level set" {
			break
		}
	}
	if change.Msg != "log level set" || change.From != "INFO" || change.To != "DEBUG" ||
		!strings.HasPrefix(change.RemoteAddr, "127.0.0.1:") {
		t.Errorf("change record = %+v in\n%s", change, logs)
	}

	// JSON form; a level above INFO still gets its change logged.
	if code, _, body := do(t, http.MethodPut, url, "", `{"level":"error"}`); code != http.StatusOK || !strings.Contains(body, `"level":"ERROR"`) {
		t.Fatalf("PUT JSON = %d %s", code, body)
	}
	if level.Level() != slog.LevelError || !strings.Contains(out.String(), `"to":"ERROR"`) {
		t.Errorf("level = %v; logs:\n%s", level.Level(), out.String())
	}
}

func TestLogLevelRejectsBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, body string
		code               int
		want               string
	}{
		{name: "unknown word", method: http.MethodPut, body: "verbose", code: 400, want: `"verbose": want debug, info, warn or error`},
		{name: "empty", method: http.MethodPut, body: "  ", code: 400, want: "empty"},
		{name: "json without level", method: http.MethodPut, body: `{"lvl":"debug"}`, code: 400, want: `want {"level": "debug"}`},
		{name: "json no field", method: http.MethodPut, body: `{}`, code: 400, want: `no "level"`},
		{name: "json bad level", method: http.MethodPut, body: `{"level":"loud"}`, code: 400, want: `"loud"`},
		{name: "too big", method: http.MethodPut, body: strings.Repeat("d", 2000), code: 400, want: "body over 1024 bytes"},
		{name: "post", method: http.MethodPost, body: "debug", code: 405, want: "method not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			level := new(slog.LevelVar)
			level.Set(slog.LevelWarn)
			url := serve(t, admin.Config{Level: level}) + "/debug/loglevel"
			code, _, body := do(t, tc.method, url, "", tc.body)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%s %q = %d %q, want %d containing %q", tc.method, tc.body, code, body, tc.code, tc.want)
			}
			if level.Level() != slog.LevelWarn {
				t.Fatalf("level changed to %v", level.Level())
			}
		})
	}
}

func TestTokenIsEnforced(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token"
	level := new(slog.LevelVar)
	checker := health.New()
	db, err := checker.AddReporter(health.Check{Name: "db"})
	if err != nil {
		t.Fatal(err)
	}
	db.Report(errors.New("dial tcp 10.1.2.3:5432: connection refused"))
	base := serve(t, admin.Config{
		Token:    token,
		Pprof:    true,
		Gatherer: prometheus.NewRegistry(),
		Level:    level,
		Health:   checker,
	})

	for _, path := range []string{"/", "/metrics", "/debug/pprof/", "/debug/loglevel", "/nowhere"} {
		for _, tc := range []struct{ auth, challenge string }{
			{auth: "", challenge: `Bearer realm="connectkit-admin"`},
			{auth: "Basic " + token, challenge: `Bearer realm="connectkit-admin"`},
			{auth: "Bearer wrong", challenge: `Bearer realm="connectkit-admin", error="invalid_token"`},
			{auth: "Bearer " + token + "x", challenge: `Bearer realm="connectkit-admin", error="invalid_token"`},
		} {
			code, header, _ := do(t, http.MethodGet, base+path, tc.auth, "")
			if code != http.StatusUnauthorized || header.Get("WWW-Authenticate") != tc.challenge {
				t.Errorf("GET %s with %q = %d %q, want 401 %q", path, tc.auth, code, header.Get("WWW-Authenticate"), tc.challenge)
			}
		}
	}
	if code, _, _ := do(t, http.MethodPut, base+"/debug/loglevel", "Bearer wrong", "debug"); code != http.StatusUnauthorized {
		t.Fatalf("PUT with a wrong token = %d, want 401", code)
	}
	if level.Level() != slog.LevelInfo {
		t.Fatalf("a rejected PUT changed the level to %v", level.Level())
	}
	if code, _, _ := do(t, http.MethodPut, base+"/debug/loglevel", "Bearer "+token, "debug"); code != http.StatusOK || level.Level() != slog.LevelDebug {
		t.Fatalf("PUT with the token = %d, level %v", code, level.Level())
	}
	// The scheme is case-insensitive.
	if code, _, _ := do(t, http.MethodGet, base+"/metrics", "bearer "+token, ""); code != http.StatusOK {
		t.Fatalf("GET /metrics with a lower-case scheme = %d, want 200", code)
	}

	// Probes need no token, and then show no error text.
	if code, _, _ := do(t, http.MethodGet, base+"/healthz", "", ""); code != http.StatusOK {
		t.Errorf("GET /healthz without token = %d, want 200", code)
	}
	if code, _, body := do(t, http.MethodGet, base+"/readyz", "", ""); code != http.StatusServiceUnavailable ||
		strings.Contains(body, "10.1.2.3") || !strings.Contains(body, `"error":"hidden"`) {
		t.Errorf("GET /readyz without token = %d %s, want 503 with the error hidden", code, body)
	}
	if code, _, body := do(t, http.MethodGet, base+"/readyz", "Bearer "+token, ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "10.1.2.3") {
		t.Errorf("GET /readyz with the token = %d %s, want 503 with the error", code, body)
	}
}

// TestProbesShowErrorsWithoutToken: without a token, the listener is
// loopback's (or beyond it with Insecure, metrics and all), and whoever
// reaches it sees the checks' errors, health's handlers hiding them by
// default.
func TestProbesShowErrorsWithoutToken(t *testing.T) {
	t.Parallel()
	checker := health.New()
	db, err := checker.AddReporter(health.Check{Name: "db"})
	if err != nil {
		t.Fatal(err)
	}
	db.Report(errors.New("dial tcp 10.1.2.3:5432: connection refused"))
	base := serve(t, admin.Config{Health: checker})
	if code, _, body := do(t, http.MethodGet, base+"/readyz", "", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "10.1.2.3") {
		t.Errorf("GET /readyz without a token configured = %d %s, want 503 with the error", code, body)
	}
}

func TestBadTokenIsRefused(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"two words", "line\nbreak", "tab\t"} {
		if _, err := admin.NewHandler(admin.Config{Token: tok}); err == nil {
			t.Errorf("token %q: no error", tok)
		}
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	for _, enabled := range []bool{false, true} {
		base := serve(t, admin.Config{Pprof: enabled})
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
			code, _, body := do(t, http.MethodGet, base+path, "", "")
			if enabled && code != http.StatusOK {
				t.Errorf("pprof on: GET %s = %d", path, code)
			}
			if !enabled && (code != http.StatusNotFound || !strings.Contains(body, "KIT_PPROF")) {
				t.Errorf("pprof off: GET %s = %d %.80s, want 404 saying how to turn it on", path, code, body)
			}
		}
	}
}

func TestMetricsServesTheRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	admin.RegisterRuntimeCollectors(reg)
	admin.RegisterRuntimeCollectors(reg) // twice: left as it was
	calls := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_calls_total", Help: "Calls."})
	reg.MustRegister(calls)
	calls.Add(3)
	code, header, body := do(t, http.MethodGet, serve(t, admin.Config{Gatherer: reg})+"/metrics", "", "")
	if code != http.StatusOK || !strings.HasPrefix(header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %q", code, header.Get("Content-Type"))
	}
	for _, want := range []string{"test_calls_total 3", "go_goroutines ", "go_build_info{", "process_resident_memory_bytes "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestOnlyConfiguredEndpoints(t *testing.T) {
	t.Parallel()
	base := serve(t, admin.Config{Level: new(slog.LevelVar)})
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/"} {
		if code, _, _ := do(t, http.MethodGet, base+path, "", ""); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
	}
	code, _, body := do(t, http.MethodGet, base+"/", "", "")
	if code != http.StatusOK || !strings.Contains(body, "/debug/loglevel") || strings.Contains(body, "/metrics") {
		t.Errorf("GET / = %d %s", code, body)
	}
}

// A web page can point a name of its own at 127.0.0.1 (DNS rebinding) and
// then call the admin listener as its own origin: read the dead letters and
// profiles, set the log level. A listener on loopback answers only requests
// that name a loopback host.
func TestLoopbackListenerRefusesOtherHosts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		loopback bool
		token    string
		host     string
		want     int
	}{
		{name: "localhost", loopback: true, host: "localhost:9090", want: http.StatusOK},
		{name: "IPv4 loopback", loopback: true, host: "127.0.0.1:9090", want: http.StatusOK},
		{name: "IPv6 loopback", loopback: true, host: "[::1]:9090", want: http.StatusOK},
		{name: "no port", loopback: true, host: "localhost", want: http.StatusOK},
		{name: "rebound name", loopback: true, host: "rebind.example:9090", want: http.StatusForbidden},
		{name: "name on a listener beyond loopback", host: "admin.example:9090", want: http.StatusOK},
		{name: "name with a token", loopback: true, token: "s3cret", host: "admin.example:9090", want: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := serve(t, admin.Config{Level: new(slog.LevelVar), Loopback: tc.loopback, Token: tc.token})
			req, _ := http.NewRequest(http.MethodGet, url+"/debug/loglevel", nil)
			req.Host = tc.host
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Errorf("GET with Host %q: %d %s, want %d", tc.host, res.StatusCode, body, tc.want)
			}
			if tc.want == http.StatusForbidden && !strings.Contains(string(body), "loopback") {
				t.Errorf("refusal %q does not say why", body)
			}
		})
	}
}

// Without a token, a page in the operator's browser could otherwise make it
// POST to the admin listener (a form, or fetch in no-cors mode, needs no
// preflight): re-drive every dead letter, say.
func TestCrossOriginWritesAreRefused(t *testing.T) {
	t.Parallel()
	h, err := admin.NewHandler(admin.Config{Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	var redriven sync.Map
	h.Handle("/redrive", "re-drive", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		redriven.Store(r.Header.Get("X-Case"), true)
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tests := []struct {
		name   string
		header []string
		want   int
	}{
		{name: "cross-site fetch", header: []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, want: http.StatusForbidden},
		{name: "older browser with an Origin", header: []string{"Origin", "https://evil.example"}, want: http.StatusForbidden},
		{name: "same origin", header: []string{"Sec-Fetch-Site", "same-origin"}, want: http.StatusOK},
		{name: "curl", want: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/redrive", nil)
			req.Header.Set("X-Case", tc.name)
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			_, ran := redriven.Load(tc.name)
			if res.StatusCode != tc.want || ran != (tc.want == http.StatusOK) {
				t.Errorf("POST: %d (handler ran: %v), want %d", res.StatusCode, ran, tc.want)
			}
		})
	}
}
