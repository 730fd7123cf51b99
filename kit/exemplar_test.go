package kit_test

import (
	"strings"
	"testing"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// TestLatencyExemplars scrapes the admin listener's /metrics in OpenMetrics
// after a call made with the server's client chain:
// grpc_server_handling_seconds and grpc_client_handling_seconds carry the
// trace id of the call's spans as an exemplar when they are sampled, and
// none when they are not.
func TestLatencyExemplars(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{
		{name: "sampled", sampler: sdktrace.AlwaysSample()},
		{name: "not sampled", sampler: sdktrace.NeverSample()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spans := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans), sdktrace.WithSampler(tc.sampler))
			t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
			srv := newPingServer(t, kit.Config{AdminAddr: "127.0.0.1:0"}, nil,
				kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
			client := newPingClient(srv, srv.HTTP2Client(), srv.ClientOptions()...)
			if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatal(err)
			}

			ct, body := scrape(t, srv.AdminURL, "application/openmetrics-text; version=1.0.0")
			if !strings.HasPrefix(ct, "application/openmetrics-text") {
				t.Fatalf("Content-Type %q, want OpenMetrics", ct)
			}
			exemplars := map[string][]string{} // by family
			for _, line := range strings.Split(string(body), "\n") {
				for _, family := range []string{"grpc_server_handling_seconds", "grpc_client_handling_seconds"} {
					if strings.HasPrefix(line, family+"_bucket{") &&
						strings.Contains(line, `grpc_method="Ping"`) && strings.Contains(line, " # ") {
						exemplars[family] = append(exemplars[family], line)
					}
				}
			}

			var traceID string
			for _, s := range spans.GetSpans().Snapshots() {
				if s.SpanKind().String() == "server" && s.Name() == "connectkit.ping.v1.PingService/Ping" {
					traceID = s.SpanContext().TraceID().String()
				}
			}
			if tc.name == "not sampled" {
				if len(exemplars) != 0 {
					t.Errorf("exemplars of an unsampled call: %q", exemplars)
				}
				return
			}
			if traceID == "" {
				t.Fatal("no server span exported")
			}
			for _, family := range []string{"grpc_server_handling_seconds", "grpc_client_handling_seconds"} {
				got := exemplars[family]
				if len(got) != 1 || !strings.Contains(got[0], `# {trace_id="`+traceID+`"}`) {
					t.Errorf("%s exemplars %q, want one with trace_id %s", family, got, traceID)
				}
			}
		})
	}
}
