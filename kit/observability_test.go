package kit_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// logLines parses the JSON lines logged so far whose msg is msg.
func logLines(tb testing.TB, logs *syncBuffer, msg string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func TestDefaultChainLogsCountsAndTracesEveryProtocol(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	srv := newPingServer(t, kit.Config{}, nil,
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))

	// The client side of the chain, as a service calling another would use
	// it: its span is the parent of the server's.
	for _, opts := range clientProtocols {
		client := newPingClient(srv, srv.HTTP2Client(), append(srv.ClientOptions(), opts...)...)
		res, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Header().Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id in the response headers")
		}
	}

	serverSpans := map[string]sdktrace.ReadOnlySpan{} // by span id
	clientSpans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans.GetSpans().Snapshots() {
		if s.Name() != "connectkit.ping.v1.PingService/Ping" {
			continue
		}
		switch s.SpanKind().String() {
		case "server":
			serverSpans[s.SpanContext().SpanID().String()] = s
		case "client":
			clientSpans[s.SpanContext().SpanID().String()] = s
		}
	}
	if len(serverSpans) != 3 || len(clientSpans) != 3 {
		t.Fatalf("%d server and %d client spans, want 3 each", len(serverSpans), len(clientSpans))
	}
	for _, s := range serverSpans {
		parent, ok := clientSpans[s.Parent().SpanID().String()]
		if !ok || parent.SpanContext().TraceID() != s.SpanContext().TraceID() {
			t.Errorf("server span %s does not continue a client span's trace", s.SpanContext().SpanID())
		}
	}

	seen := map[string]bool{}
	for _, line := range logLines(t, &logs, "rpc") {
		if line["kind"] != "server" || line["procedure"] != pingPath {
			continue
		}
		seen[line["protocol"].(string)] = true
		if line["code"] != "ok" || line["level"] != "INFO" || line["request_id"] == "" || line["http"] != "HTTP/2.0" {
			t.Errorf("log line %v", line)
		}
		if _, ok := serverSpans[line["span_id"].(string)]; !ok {
			t.Errorf("log line's span_id %v is not a server span", line["span_id"])
		}
	}
	for name := range clientProtocols {
		if !seen[name] {
			t.Errorf("no server log line for %s", name)
		}
	}

	labels := map[string]string{"grpc_code": "OK", "grpc_method": "Ping", "grpc_service": "connectkit.ping.v1.PingService", "grpc_type": "unary"}
	if n := counterValue(t, srv.Registry(), "grpc_server_handled_total", labels); n != 3 {
		t.Errorf("grpc_server_handled_total%v = %v, want 3", labels, n)
	}
	if n := counterValue(t, srv.Registry(), "grpc_client_handled_total", labels); n != 3 {
		t.Errorf("grpc_client_handled_total%v = %v, want 3", labels, n)
	}
}

// counterValue returns the sum of the counters (or gauges) name in reg whose
// labels include labels: the value of the one that all its labels name.
func counterValue(tb testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			matched := 0
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok {
					if want != l.GetValue() {
						continue metrics
					}
					matched++
				}
			}
			if matched != len(labels) { // a wanted label the metric does not have
				continue
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestTracePublicEndpoint checks Config.TracePublicEndpoint: a call's span
// begins a trace of its own, linked to the caller's span.
func TestTracePublicEndpoint(t *testing.T) {
	t.Parallel()
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, public := range []bool{false, true} {
		spans := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
		srv := newPingServer(t, kit.Config{TracePublicEndpoint: public}, nil,
			kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
		req := connect.NewRequest(&pingv1.PingRequest{Number: 1})
		req.Header().Set("Traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
		if _, err := newPingClient(srv, srv.HTTP2Client()).Ping(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		got := spans.GetSpans().Snapshots()
		if len(got) != 1 {
			t.Fatalf("public %v: %d spans, want 1", public, len(got))
		}
		continued := got[0].SpanContext().TraceID().String() == callerTrace
		linked := len(got[0].Links()) == 1 && got[0].Links()[0].SpanContext.TraceID().String() == callerTrace
		if continued == public || linked != public {
			t.Errorf("public %v: the span continues the caller's trace: %v, links to it: %v", public, continued, linked)
		}
	}
}

// TestSettingsNeedKitsChain: KIT_TRACE_PUBLIC_ENDPOINT and
// KIT_METRICS_NATIVE_HISTOGRAMS configure kit's tracing and metrics.
// Without kit's chain, or with the piece they configure left out, there
// is nothing of kit's for them to change, and the tracing the application
// adds instead would still trust its callers' trace context: New refuses
// the setting rather than ignore it.
func TestSettingsNeedKitsChain(t *testing.T) {
	t.Parallel()
	publicEndpoint := kit.Config{TracePublicEndpoint: true}
	native := kit.Config{NativeHistograms: true}
	for _, tc := range []struct {
		name   string
		cfg    kit.Config
		option kit.Option
		names  []string // what the error names: the variable, the option, what to use instead
	}{
		{name: "public endpoint without the default chain", cfg: publicEndpoint, option: kit.WithoutDefaultInterceptors(),
			names: []string{"KIT_TRACE_PUBLIC_ENDPOINT", "WithoutDefaultInterceptors", "interceptors.WithPublicEndpoint"}},
		{name: "public endpoint without its tracing", cfg: publicEndpoint, option: kit.WithInterceptorOptions(interceptors.WithoutTracing()),
			names: []string{"KIT_TRACE_PUBLIC_ENDPOINT", "WithoutTracing", "interceptors.WithPublicEndpoint"}},
		{name: "native histograms without the default chain", cfg: native, option: kit.WithoutDefaultInterceptors(),
			names: []string{"KIT_METRICS_NATIVE_HISTOGRAMS", "WithoutDefaultInterceptors", "interceptors.WithNativeHistograms"}},
		{name: "native histograms without its metrics", cfg: native, option: kit.WithInterceptorOptions(interceptors.WithoutMetrics()),
			names: []string{"KIT_METRICS_NATIVE_HISTOGRAMS", "WithoutMetrics", "interceptors.WithNativeHistograms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := kit.New(tc.cfg, tc.option)
			if err == nil {
				t.Fatalf("New took %s without the piece of kit's chain it configures, and did nothing with it", tc.names[0])
			}
			for _, want := range tc.names {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
		})
	}
}

// A served call's line names the HTTP version it came over, and its
// request id is the one the response echoes, with CORS on (the routes
// behind rs/cors' handler) and off (kit's serving hands the routes the
// connection's State), over HTTP/1.1 and h2c.
func TestLogLineHTTPVersionAndEcho(t *testing.T) {
	t.Parallel()
	for _, origins := range [][]string{nil, {"https://app.example.com"}} {
		var logs syncBuffer
		srv := newPingServer(t, kit.Config{CORSAllowedOrigins: origins}, nil,
			kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
		clients := map[string]*http.Client{"HTTP/1.1": srv.HTTP1Client(), "HTTP/2.0": srv.HTTP2Client()}
		ids := map[string]string{} // the echoed ids, by HTTP version
		for version, hc := range clients {
			res, err := newPingClient(srv, hc).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Header().Values("X-Request-Id"); len(got) != 1 || got[0] == "" {
				t.Fatalf("CORS origins %v, %s: response X-Request-Id %q; want one id", origins, version, got)
			}
			ids[version] = res.Header().Get("X-Request-Id")
		}
		seen := 0
		for _, line := range logLines(t, &logs, "rpc") {
			if line["kind"] != "server" || line["procedure"] != pingPath {
				continue
			}
			seen++
			version, _ := line["http"].(string)
			if id, ok := ids[version]; !ok || line["request_id"] != id {
				t.Errorf("CORS origins %v: line %v; want http one of %v with its echoed request_id", origins, line, ids)
			}
		}
		if seen != len(clients) {
			t.Errorf("CORS origins %v: %d server lines, want %d", origins, seen, len(clients))
		}
	}
}
