package kit_test

import (
	"io"
	"net/http"
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
// after a call: grpc_server_handling_seconds carries the trace id of the
// call's server span as an exemplar when the span is sampled, and none when
// it is not.
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
			client := newPingClient(srv, srv.HTTP2Client())
			if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatal(err)
			}

			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.AdminURL+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
				t.Fatalf("Content-Type %q, want OpenMetrics", ct)
			}
			var exemplars []string
			for _, line := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(line, "grpc_server_handling_seconds_bucket{") &&
					strings.Contains(line, `grpc_method="Ping"`) && strings.Contains(line, " # ") {
					exemplars = append(exemplars, line)
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
			if len(exemplars) != 1 || !strings.Contains(exemplars[0], `# {trace_id="`+traceID+`"}`) {
				t.Errorf("exemplars %q, want one with trace_id %s", exemplars, traceID)
			}
		})
	}
}
