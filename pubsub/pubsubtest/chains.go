package pubsubtest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/pubsub"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func testTraceContinuity(t *testing.T, h *harness) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracing, err := newTracing(tp)
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan trace.SpanContext, 1)
	sub := newSubscriber(t, h.broker, "traced", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		handled <- trace.SpanContextFromContext(ctx)
		return nil
	}, pubsub.WithHandlerOptions(connect.WithInterceptors(tracing)), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "traced", pubsub.WithClientOptions(connect.WithInterceptors(tracing)))

	// The RPC handler that publishes.
	ctx, root := tp.Tracer("test").Start(t.Context(), "rpc")
	if err := pub.Publish(ctx, &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	root.End()
	got := <-handled
	if got.TraceID() != root.SpanContext().TraceID() {
		t.Errorf("handler's trace %s, want the publisher's %s", got.TraceID(), root.SpanContext().TraceID())
	}
	spans := map[string]tracetest.SpanStub{}
	WaitFor(t, "three spans", func() bool {
		for _, s := range exporter.GetSpans() {
			spans[s.Name] = s
		}
		return len(spans) >= 3
	})
	publish, process := spans["traced/publish"], spans["traced/s"]
	if publish.Parent.SpanID() != root.SpanContext().SpanID() {
		t.Errorf("publish span's parent %s, want the RPC span %s (spans: %v)", publish.Parent.SpanID(), root.SpanContext().SpanID(), names(spans))
	}
	if process.Parent.SpanID() != publish.SpanContext.SpanID() || process.SpanContext.TraceID() != root.SpanContext().TraceID() {
		t.Errorf("handler span's parent %s in trace %s, want the publish span %s in trace %s",
			process.Parent.SpanID(), process.SpanContext.TraceID(), publish.SpanContext.SpanID(), root.SpanContext().TraceID())
	}
}

// newTracing returns otelconnect's interceptor with W3C trace context, whose
// handler spans continue the caller's trace (as children, not links): a
// user's own tracing interceptor, which must work on messages as on RPCs.
func newTracing(tp trace.TracerProvider) (*otelconnect.Interceptor, error) {
	return otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(propagation.TraceContext{}),
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutMetrics(),
	)
}

func names(spans map[string]tracetest.SpanStub) []string {
	var out []string
	for name := range spans {
		out = append(out, name)
	}
	return out
}

// authInterceptor is an interceptor as a user writes it once: clients send a
// token, handlers require it.
func authInterceptor(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if req.Spec().IsClient {
				req.Header().Set("Authorization", "Bearer "+token)
				return next(ctx, req)
			}
			if req.Header().Get("Authorization") != "Bearer "+token {
				return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("missing or wrong token"))
			}
			return next(ctx, req)
		}
	}
}

// countingInterceptor counts calls by side and procedure.
type countingInterceptor struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		side := "server "
		if req.Spec().IsClient {
			side = "client "
		}
		c.mu.Lock()
		c.calls[side+req.Spec().Procedure]++
		c.mu.Unlock()
		return next(ctx, req)
	}
}

func (c *countingInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (c *countingInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func (c *countingInterceptor) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[key]
}

type pingServer struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (pingServer) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

func testOneChain(t *testing.T, h *harness) {
	counter := &countingInterceptor{calls: map[string]int{}}
	chain := connect.WithInterceptors(counter, authInterceptor("s3cret"))

	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(pingServer{}, chain))
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	client := pingv1connect.NewPingServiceClient(server.Client(), server.URL, chain)
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatalf("RPC through the chain: %v", err)
	}

	rec := newRecorder()
	cfg := testDelivery()
	cfg.MaxAttempts = 2
	sub := newSubscriber(t, h.broker, "chained", "s", rec.handler(nil),
		pubsub.WithHandlerOptions(chain), pubsub.WithDelivery(cfg))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "chained", pubsub.WithClientOptions(chain))
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}, pubsub.WithMessageID("authorized")); err != nil {
		t.Fatalf("Publish through the chain: %v", err)
	}
	WaitFor(t, "the authorized message", func() bool { return rec.succeeded() == 1 })

	for key, want := range map[string]int{
		"client /connectkit.ping.v1.PingService/Ping":  1,
		"server /connectkit.ping.v1.PingService/Ping":  1,
		"client " + pubsub.PublishProcedure("chained"): 1,
		"server " + pubsub.Procedure("chained", "s"):   1,
	} {
		if got := counter.count(key); got != want {
			t.Errorf("interceptor saw %d calls of %s, want %d", got, key, want)
		}
	}

	// A message published around the chain carries no token: the same
	// interceptor rejects it on delivery.
	conf, err := h.broker.Publish(t.Context(), &pubsub.Message{ID: "forged", Topic: "chained", Data: nil, Header: http.Header{
		pubsub.HeaderContentType: {pubsub.ContentTypeProto}, pubsub.HeaderMessageType: {"connectkit.ping.v1.PingRequest"}}})
	if err == nil {
		err = conf.Wait(t.Context())
	}
	if err != nil {
		t.Fatal(err)
	}
	dl := waitDeadLetters(t, h.broker, "chained", "s", 1)[0]
	if dl.Message.ID != "forged" || !strings.Contains(dl.Error, "token") {
		t.Errorf("dead letter %s with error %q, want the forged message rejected by the auth interceptor", dl.Message.ID, dl.Error)
	}
	if n := len(rec.callsOf("forged")); n != 0 {
		t.Errorf("handler ran %d times for a message the chain rejected", n)
	}
}
