package interceptors_test

import (
	"context"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// receivedHeader records a header of the calls a server receives.
type receivedHeader struct {
	key string
	mu  sync.Mutex
	got []string
}

func (h *receivedHeader) options() []connect.HandlerOption {
	return []connect.HandlerOption{connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			h.mu.Lock()
			h.got = append(h.got, req.Header().Get(h.key))
			h.mu.Unlock()
			return next(ctx, req)
		}
	}))}
}

func (h *receivedHeader) values() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

// TestTracingPublicEndpoint checks that a server whose callers are
// untrusted begins a trace of its own for each call, linked to the
// caller's span, and passes on neither the caller's trace nor its baggage.
func TestTracingPublicEndpoint(t *testing.T) {
	t.Parallel()
	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	baggage := &receivedHeader{key: "Baggage"}
	backend := newTestServer(t, serverConfig{handlerOptions: baggage.options()})
	frontend := newTestServer(t, serverConfig{serverChainOpts: []interceptors.Option{interceptors.WithPublicEndpoint()}})
	frontend.svc.downstream = pingv1connect.NewPingServiceClient(httpClient(t, false), backend.URL,
		connect.WithInterceptors(frontend.server.chain.Client()...))

	req := connect.NewRequest(&pingv1.PingRequest{Text: "forward"})
	req.Header().Set("Traceparent", producerTraceparent)
	req.Header().Set("Baggage", "user=mallory")
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), frontend.URL)
	if _, err := client.Ping(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(frontend.server.spans.GetSpans()) == 2 }, func() string { return "the server's and its client's spans" })
	var front tracetest.SpanStub
	for _, s := range frontend.server.spans.GetSpans() {
		if s.SpanKind == trace.SpanKindServer {
			front = s
		}
	}
	if front.SpanContext.TraceID().String() == callerTrace || front.Parent.IsValid() {
		t.Errorf("server span of trace %s, parent %v: want a trace of its own, no parent", front.SpanContext.TraceID(), front.Parent)
	}
	if len(front.Links) != 1 || front.Links[0].SpanContext.TraceID().String() != callerTrace || front.Links[0].SpanContext.SpanID().String() != callerSpan {
		t.Errorf("server span's links = %+v, want one to the caller's span %s/%s", front.Links, callerTrace, callerSpan)
	}
	back := onlySpan(t, backend.server.spans)
	if back.SpanContext.TraceID() != front.SpanContext.TraceID() {
		t.Errorf("the downstream call's span is of trace %s, want the public server's %s", back.SpanContext.TraceID(), front.SpanContext.TraceID())
	}
	if got := baggage.values(); len(got) != 1 || got[0] != "" {
		t.Errorf("the downstream call carried baggage %q, want none: the caller's is not to be trusted", got)
	}

	// A server stream, without a traceparent: no link.
	stream, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 2}))
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(frontend.server.spans.GetSpans()) == 3 }, func() string { return "the stream's span" })
	if s := frontend.server.spans.GetSpans()[2]; s.Parent.IsValid() || len(s.Links) != 0 {
		t.Errorf("a call without trace context: parent %v, links %v; want neither", s.Parent, s.Links)
	}
}

// TestTracingPublicEndpointNoopProvider checks that without spans a public
// server's logs and downstream calls carry none of the caller's trace.
func TestTracingPublicEndpointNoopProvider(t *testing.T) {
	t.Parallel()
	traceparent := &receivedHeader{key: "Traceparent"}
	backend := newTestServer(t, serverConfig{handlerOptions: traceparent.options()})
	frontend := newTestServer(t, serverConfig{serverChainOpts: []interceptors.Option{
		interceptors.WithTracerProvider(noop.NewTracerProvider()), interceptors.WithPublicEndpoint(),
	}})
	frontend.svc.downstream = pingv1connect.NewPingServiceClient(httpClient(t, false), backend.URL,
		connect.WithInterceptors(frontend.server.chain.Client()...))
	req := connect.NewRequest(&pingv1.PingRequest{Text: "forward"})
	req.Header().Set("Traceparent", producerTraceparent)
	req.Header().Set("X-Request-Id", "public-noop")
	if _, err := pingv1connect.NewPingServiceClient(httpClient(t, false), frontend.URL).Ping(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	line := frontend.server.logs.waitLine(t, map[string]any{"msg": "rpc", "kind": "server", "request_id": "public-noop"})
	if id, ok := line["trace_id"]; ok {
		t.Errorf("log line has the caller's trace id %v, want none", id)
	}
	if got := traceparent.values(); len(got) != 1 || got[0] != "" {
		t.Errorf("the downstream call carried traceparent %q, want none", got)
	}
}
