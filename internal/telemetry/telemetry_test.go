package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/connectkit/connectkit/internal/testcert"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		wantErr string // the variable and value the error must name; "" for none
		sampler string // the sampler's description, when no error
	}{
		{name: "unset", sampler: "ParentBased{root:AlwaysOnSampler"},
		{name: "all valid", vars: map[string]string{
			"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_PROPAGATORS": "tracecontext", "OTEL_SERVICE_NAME": "svc",
			"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=a%20b",
		}, sampler: "ParentBased{root:TraceIDRatioBased{0.25}"},
		{name: "ratio", vars: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, sampler: "TraceIDRatioBased{0}"},
		{name: "always off", vars: map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, sampler: "AlwaysOffSampler"},
		{name: "bad disabled", vars: map[string]string{"OTEL_SDK_DISABLED": "yes"}, wantErr: `OTEL_SDK_DISABLED="yes"`},
		{name: "bad exporter", vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp,zipkin"}, wantErr: `OTEL_TRACES_EXPORTER="otlp,zipkin": unsupported exporter "zipkin"`},
		{name: "bad protocol", vars: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
		{name: "traces protocol wins", vars: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, wantErr: `="thrift"`},
		{name: "bad endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, wantErr: `OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318"`},
		{name: "bad traces endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://x"}, wantErr: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="ftp://x"`},
		{name: "bad sampler", vars: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, wantErr: `OTEL_TRACES_SAMPLER="jaeger_remote"`},
		{name: "bad ratio", vars: map[string]string{"OTEL_TRACES_SAMPLER_ARG": "1.5"}, wantErr: `OTEL_TRACES_SAMPLER_ARG="1.5"`},
		{name: "bad propagator", vars: map[string]string{"OTEL_PROPAGATORS": "b3"}, wantErr: `OTEL_PROPAGATORS="b3": unsupported propagator "b3"`},
		{name: "bad attribute", vars: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "a=1,b"}, wantErr: `OTEL_RESOURCE_ATTRIBUTES="a=1,b": "b" is not key=value`},
		{name: "bad encoding", vars: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "a=%zz"}, wantErr: `OTEL_RESOURCE_ATTRIBUTES="a=%zz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ConfigFromEnv(env(tc.vars))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %s", err, tc.wantErr)
				}
				if _, err := New(t.Context(), cfg); err == nil {
					t.Error("New accepted an invalid Config")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sampler, err := cfg.sampler()
			if err != nil || !strings.HasPrefix(sampler.Description(), tc.sampler) {
				t.Errorf("sampler %v (%v), want %s", sampler.Description(), err, tc.sampler)
			}
		})
	}
}

// TestNone checks the default: nothing recorded or sent, while trace
// context passes through.
func TestNone(t *testing.T) {
	t.Parallel()
	for _, vars := range []map[string]string{
		nil,
		{"OTEL_TRACES_EXPORTER": "none"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
	} {
		cfg, err := ConfigFromEnv(env(vars))
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if p.Exporting() {
			t.Errorf("%v: exporting", vars)
		}
		incoming := propagation.HeaderCarrier{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
		ctx := p.Propagator().Extract(t.Context(), incoming)
		ctx, span := p.TracerProvider().Tracer("test").Start(ctx, "call")
		if span.IsRecording() {
			t.Errorf("%v: the span is recorded", vars)
		}
		outgoing := propagation.HeaderCarrier{}
		p.Propagator().Inject(ctx, outgoing)
		if got := outgoing.Get("Traceparent"); got != incoming.Get("Traceparent") {
			t.Errorf("%v: outgoing traceparent %q, want the incoming one", vars, got)
		}
		span.End()
		if err := p.Shutdown(t.Context()); err != nil {
			t.Error(err)
		}
	}
}

func TestConsole(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	cfg, err := ConfigFromEnv(env(map[string]string{
		"OTEL_TRACES_EXPORTER": "console", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,team=a%2Cb",
	}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(t.Context(), cfg, WithConsoleWriter(&out), WithServiceName("fallback"))
	if err != nil {
		t.Fatal(err)
	}
	startSpan(t, p, "console-span")
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Name":"console-span"`, `"Value":"from-attrs"`, `"Value":"a,b"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console output lacks %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "fallback") {
		t.Error("the fallback service name replaced the one in OTEL_RESOURCE_ATTRIBUTES")
	}
}

// TestOTLPHTTP exports over OTLP/HTTP to a loopback collector, which gets
// the span when the provider shuts down.
func TestOTLPHTTP(t *testing.T) {
	t.Parallel()
	received := make(chan *coltracepb.ExportTraceServiceRequest, 1)
	collector := httptest.NewServer(otlpHTTPCollector(received, "http-svc"))
	t.Cleanup(collector.Close)
	cfg, err := ConfigFromEnv(env(map[string]string{
		"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_SERVICE_NAME": "http-svc",
	}))
	if err != nil {
		t.Fatal(err)
	}
	assertExported(t, cfg, received, "http-svc")
}

// otlpHTTPCollector answers OTLP/HTTP exports at /v1/traces, sending on
// received the first whose resource is service's and dropping the others:
// it never blocks, so that the exports of other processes, which reach a
// collector on the default port, neither take the test's place nor hold
// their handlers, and with them the server's Close, until the test times
// out.
func otlpHTTPCollector(received chan<- *coltracepb.ExportTraceServiceRequest, service string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &coltracepb.ExportTraceServiceRequest{}
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		if serviceOf(req) == service {
			select {
			case received <- req:
			default:
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	})
}

// serviceOf returns the service.name of req's first resource, or "".
func serviceOf(req *coltracepb.ExportTraceServiceRequest) string {
	resources := req.GetResourceSpans()
	if len(resources) == 0 {
		return ""
	}
	for _, kv := range resources[0].GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// TestOTLPGRPC exports over OTLP/gRPC to a loopback collector.
func TestOTLPGRPC(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	received := make(chan *coltracepb.ExportTraceServiceRequest, 1)
	coltracepb.RegisterTraceServiceServer(srv, &collector{received: received})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cfg, err := ConfigFromEnv(env(map[string]string{
		"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + lis.Addr().String(), "OTEL_SERVICE_NAME": "grpc-svc",
	}))
	if err != nil {
		t.Fatal(err)
	}
	assertExported(t, cfg, received, "grpc-svc")
}

// TestOTLPEndpoint: the URL spans go to, for each way of giving it or
// none, as OpenTelemetry's specification has it (cleartext by default).
func TestOTLPEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		vars map[string]string
		want string
	}{
		{name: "http default", want: "http://localhost:4318/v1/traces"},
		{name: "grpc default", vars: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: "http://localhost:4317"},
		{name: "http base", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/"}, want: "https://c:4318/v1/traces"},
		{name: "grpc base", vars: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317"}, want: "https://c:4317"},
		{name: "traces endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/t"}, want: "http://b:4318/t"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ConfigFromEnv(env(tc.vars))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := cfg.endpoint(); err != nil || got != tc.want {
				t.Errorf("endpoint() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestOTLPHTTPDefaultEndpoint exports with OTEL_TRACES_EXPORTER=otlp alone
// to a cleartext collector at localhost:4318, the default the README and
// OpenTelemetry's specification give: the Go exporter's own default is
// https://localhost:4318, which such a collector cannot answer. The port is
// fixed by what is tested; the test is skipped when something else holds
// it, on 127.0.0.1 or on ::1, either of which localhost may resolve to
// first. Other processes exporting there meanwhile are ignored.
func TestOTLPHTTPDefaultEndpoint(t *testing.T) {
	t.Parallel()
	received := make(chan *coltracepb.ExportTraceServiceRequest, 1)
	handler := otlpHTTPCollector(received, "default-svc")
	lis, err := net.Listen("tcp", "127.0.0.1:4318")
	if err != nil {
		t.Skipf("the default OTLP port is taken: %v", err)
	}
	collector := httptest.NewUnstartedServer(handler)
	collector.Listener.Close()
	collector.Listener = lis
	collector.Start()
	t.Cleanup(collector.Close)
	switch lis6, err := net.Listen("tcp", "[::1]:4318"); {
	case errors.Is(err, syscall.EADDRINUSE):
		t.Skipf("the default OTLP port is taken on ::1: %v", err)
	case err == nil: // else no IPv6 loopback: localhost is 127.0.0.1
		collector6 := httptest.NewUnstartedServer(handler)
		collector6.Listener.Close()
		collector6.Listener = lis6
		collector6.Start()
		t.Cleanup(collector6.Close)
	}
	cfg, err := ConfigFromEnv(env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "default-svc"}))
	if err != nil {
		t.Fatal(err)
	}
	assertExported(t, cfg, received, "default-svc")
}

type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	received chan<- *coltracepb.ExportTraceServiceRequest
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.received <- req
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// assertExported makes a span with cfg and checks that the collector got
// it, with the service name, once the provider has shut down.
func assertExported(t *testing.T, cfg Config, received <-chan *coltracepb.ExportTraceServiceRequest, service string) {
	t.Helper()
	p, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Exporting() {
		t.Fatal("not exporting")
	}
	startSpan(t, p, "exported-span")
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var req *coltracepb.ExportTraceServiceRequest
	select {
	case req = <-received:
	default:
		t.Fatal("Shutdown returned before the span was exported")
	}
	rs := req.GetResourceSpans()[0]
	if got, name := rs.GetScopeSpans()[0].GetSpans()[0].GetName(), serviceOf(req); got != "exported-span" || name != service {
		t.Errorf("exported span %q of service %q, want exported-span of %s", got, name, service)
	}
}

func startSpan(t *testing.T, p *Provider, name string) {
	t.Helper()
	_, span := p.TracerProvider().Tracer("test").Start(t.Context(), name)
	if !span.IsRecording() || !span.SpanContext().IsSampled() {
		t.Fatal("span not recorded")
	}
	span.End()
}

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

// TestServiceVersion checks service.version on the spans' resource: the
// binary's build info by default, OTEL_RESOURCE_ATTRIBUTES' when it gives
// one.
func TestServiceVersion(t *testing.T) {
	t.Parallel()
	revision := []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123abcd"}}
	for _, tc := range []struct {
		name  string
		info  *debug.BuildInfo // nil: no build info
		attrs string           // OTEL_RESOURCE_ATTRIBUTES
		want  string           // "" for no service.version
	}{
		{name: "tagged module", info: &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: revision}, want: "v1.2.3"},
		{name: "devel with revision", info: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: revision}, want: "0123abcd"},
		{name: "devel with a dirty tree", info: &debug.BuildInfo{
			Main: debug.Module{Version: "(devel)"}, Settings: append(slices.Clone(revision), debug.BuildSetting{Key: "vcs.modified", Value: "true"}),
		}, want: "0123abcd+dirty"},
		{name: "devel without vcs", info: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}},
		{name: "no build info"},
		{name: "resource attributes win", info: &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, attrs: "service.version=2.0%2Bhotfix", want: "2.0+hotfix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out syncBuffer
			cfg, err := ConfigFromEnv(env(map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_RESOURCE_ATTRIBUTES": tc.attrs}))
			if err != nil {
				t.Fatal(err)
			}
			readInfo := optionFunc(func(o *options) {
				o.buildInfo = func() (*debug.BuildInfo, bool) { return tc.info, tc.info != nil }
			})
			p, err := New(t.Context(), cfg, WithConsoleWriter(&out), readInfo)
			if err != nil {
				t.Fatal(err)
			}
			startSpan(t, p, "versioned-span")
			if err := p.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			if tc.want == "" {
				if strings.Contains(got, `"service.version"`) {
					t.Errorf("service.version set without a version known:\n%s", got)
				}
				return
			}
			if want := `{"Key":"service.version","Value":{"Type":"STRING","Value":"` + tc.want + `"}}`; strings.Count(got, `"service.version"`) != 1 || !strings.Contains(got, want) {
				t.Errorf("console output lacks %s once:\n%s", want, got)
			}
		})
	}
}

// TestExportFailureLineIsBounded: the OTLP/HTTP exporter puts the body of
// a collector's error answer in its error, up to 4 MiB (an endpoint that
// is no collector answers a whole HTML page), and WithLogger's line would
// carry it whole, once for every batch; it keeps the first
// maxExportErrorBytes and says how much it left out.
func TestExportFailureLineIsBounded(t *testing.T) {
	t.Parallel()
	page := strings.Repeat("<p>not a collector</p>", 3000) // 66 000 bytes
	notCollector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, page, http.StatusNotFound)
	}))
	t.Cleanup(notCollector.Close)
	cfg, err := ConfigFromEnv(env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": notCollector.URL}))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	p, err := New(t.Context(), cfg, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	startSpan(t, p, "span")
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	var line struct {
		Msg string
		Err string `json:"error"`
	}
	if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
		t.Fatalf("%v: %s", err, logs.String())
	}
	if line.Msg != "traces export failed" || !strings.Contains(line.Err, "404 Not Found") ||
		len(line.Err) > maxExportErrorBytes+100 || !strings.Contains(line.Err, "bytes left out") {
		t.Errorf("line of %d bytes, want at most %d, naming the 404 and what it left out: %.300s",
			len(line.Err), maxExportErrorBytes+100, line.Err)
	}
}

// TestExportPartialSuccess: a collector that takes a batch but answers an
// OTLP partial success, a warning with every span kept or some spans
// rejected, costs the rejected spans alone: the OTLP exporters return
// that answer as an error, which counted the whole batch as failed
// (kit_trace_export_failures_total, its spans, the unsent spans of the
// shutdown line) and logged it "traces export failed" at error, though
// the collector kept it.
func TestExportPartialSuccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rejected int64
		lost     int
		msg      string
	}{
		{0, 0, "traces exported with a warning from the collector"},
		{2, 2, "traces export failed"},
	} {
		collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			b, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
				RejectedSpans: tc.rejected, ErrorMessage: "spans too old"}})
			if err != nil {
				t.Error(err)
			}
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(b)
		}))
		t.Cleanup(collector.Close)
		cfg, err := ConfigFromEnv(env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}))
		if err != nil {
			t.Fatal(err)
		}
		var logs syncBuffer
		var mu sync.Mutex
		failed := 0
		p, err := New(t.Context(), cfg, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
			WithExportFailures(func(_ string, spans int) { mu.Lock(); failed += spans; mu.Unlock() }))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			startSpan(t, p, "span")
		}
		if err := p.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := failed
		mu.Unlock()
		if unsent := p.Unsent(); got != tc.lost || len(unsent) != 1 || unsent[0].Spans != int64(tc.lost) {
			t.Errorf("%d of 3 spans rejected: %d counted failed, unsent %v; want %d", tc.rejected, got, unsent, tc.lost)
		}
		var line struct {
			Msg   string
			Spans int
			Err   string `json:"error"`
		}
		if err := json.Unmarshal([]byte(logs.String()), &line); err != nil || line.Msg != tc.msg || !strings.Contains(line.Err, "spans too old") {
			t.Errorf("%d of 3 spans rejected: log %s, want one line %q naming the collector's message", tc.rejected, logs.String(), tc.msg)
		}
	}
}

// TestCertificateWithCleartextEndpoint: a TLS variable of the OTLP
// exporters (OTEL_EXPORTER_OTLP_CERTIFICATE) with an http:// endpoint, the
// default one included, fails New with an error that names the variables,
// where the exporter's own ("insecure HTTP endpoint cannot use TLS client
// configuration") named none. Not parallel: the exporter reads the
// certificate's variable from the process environment.
func TestCertificateWithCleartextEndpoint(t *testing.T) {
	ca, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", caFile)
	for _, tc := range []struct {
		name string
		vars map[string]string
		want []string // in the error; none for no error
	}{
		{name: "no endpoint", want: []string{
			"OTEL_EXPORTER_OTLP_CERTIFICATE set",
			"neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, so spans go to the default http://localhost:4318",
		}},
		{name: "http base endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			want: []string{"OTEL_EXPORTER_OTLP_CERTIFICATE set", "OTEL_EXPORTER_OTLP_ENDPOINT is an http:// URL"}},
		{name: "http traces endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
			want: []string{"OTEL_EXPORTER_OTLP_CERTIFICATE set", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is an http:// URL"}},
		{name: "https endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_CERTIFICATE": caFile}
			maps.Copy(vars, tc.vars)
			cfg, err := ConfigFromEnv(env(vars))
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(t.Context(), cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New = %v, want no error", err)
				}
				_ = p.Shutdown(t.Context())
				return
			}
			if err == nil {
				_ = p.Shutdown(t.Context())
				t.Fatal("New succeeded, want an error")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New = %v, want it to say %q", err, want)
				}
			}
		})
	}
}
