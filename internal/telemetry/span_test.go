package telemetry

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestMarkHTTP1 marks a client span, and leaves alone a server span, which
// a handler's outgoing call without a client span of its own carries, and
// a span not sampled.
func TestMarkHTTP1(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	for _, tc := range []struct {
		name string
		tp   trace.TracerProvider
		kind trace.SpanKind
		want string // network.protocol.version, "" for none
	}{
		{name: "client", tp: tp, kind: trace.SpanKindClient, want: "1.1"},
		{name: "server", tp: tp, kind: trace.SpanKindServer, want: ""},
		{name: "internal", tp: tp, kind: trace.SpanKindInternal, want: ""},
		{name: "client not sampled", tp: never, kind: trace.SpanKindClient, want: ""},
	} {
		ctx, span := tc.tp.Tracer("test").Start(t.Context(), tc.name, trace.WithSpanKind(tc.kind))
		MarkHTTP1(ctx)
		span.End()
		got := ""
		for _, s := range spans.GetSpans().Snapshots() {
			for _, a := range s.Attributes() {
				if s.Name() == tc.name && a.Key == "network.protocol.version" {
					got = a.Value.String()
				}
			}
		}
		if got != tc.want {
			t.Errorf("%s span: network.protocol.version = %q, want %q", tc.name, got, tc.want)
		}
	}
}
