package interceptors_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracedPings answers Ping with the trace id of the span in its context.
type tracedPings struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (tracedPings) Ping(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	traceID := trace.SpanFromContext(ctx).SpanContext().TraceID()
	return connect.NewResponse(&pingv1.PingResponse{Text: traceID.String()}), nil
}

// This example traces a call on both sides: the client span injects its
// W3C trace context (traceparent) in the request headers, and the server
// span continues it, so that the handler's context carries the caller's
// trace. In a service, the tracer provider is the one that exports your
// spans (kit builds it from the OTEL_* variables); here a recorder keeps
// them in memory.
func ExampleTracing() {
	spans := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer provider.Shutdown(context.Background())
	tracing, err := interceptors.Tracing(interceptors.WithTracerProvider(provider))
	if err != nil {
		fmt.Println(err)
		return
	}

	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(tracedPings{}, connect.WithInterceptors(tracing)))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL, connect.WithInterceptors(tracing))
	res, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{}))
	if err != nil {
		fmt.Println(err)
		return
	}

	ended := spans.Ended() // the server span ends first, before its response is sent
	server, clientSpan := ended[0], ended[1]
	fmt.Println(server.Name(), server.SpanKind())
	fmt.Println(clientSpan.Name(), clientSpan.SpanKind())
	fmt.Println("one trace:", server.SpanContext().TraceID() == clientSpan.SpanContext().TraceID())
	fmt.Println("server span's parent is the client span:", server.Parent().SpanID() == clientSpan.SpanContext().SpanID())
	fmt.Println("handler's context in that trace:", res.Msg.GetText() == clientSpan.SpanContext().TraceID().String())
	// Output:
	// connectkit.ping.v1.PingService/Ping server
	// connectkit.ping.v1.PingService/Ping client
	// one trace: true
	// server span's parent is the client span: true
	// handler's context in that trace: true
}
