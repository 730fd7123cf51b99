package telemetry

import (
	"context"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// http1Version is the attribute of a call sent over HTTP/1.1.
var http1Version = semconv.NetworkProtocolVersion("1.1")

// spanKinder is a span that tells its kind: the SDK's do.
type spanKinder interface{ SpanKind() trace.SpanKind }

// MarkHTTP1 sets network.protocol.version "1.1" on ctx's span when it is a
// client span that records: kit's HTTP client sends a call so to a server
// that speaks only HTTP/1.x, where its calls otherwise use HTTP/2. Another
// span of ctx (the server span of a handler that calls out without a
// client span of its own) is left alone: the attribute would say how its
// own request came.
func MarkHTTP1(ctx context.Context) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if k, ok := span.(spanKinder); ok && k.SpanKind() == trace.SpanKindClient {
		span.SetAttributes(http1Version)
	}
}
