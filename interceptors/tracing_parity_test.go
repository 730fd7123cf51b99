package interceptors_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTracingMatchesOtelconnect checks that Tracing's spans are the ones
// otelconnect makes with the options Tracing documents: for each call, on
// each protocol, the client and server spans have the same names, kinds,
// statuses, attributes and parent.
func TestTracingMatchesOtelconnect(t *testing.T) {
	t.Parallel()
	type call struct {
		name string
		run  func(*testing.T, pingv1connect.PingServiceClient)
	}
	fail := func(code connect.Code) call {
		return call{name: "fail " + code.String(), run: func(t *testing.T, c pingv1connect.PingServiceClient) {
			_, err := c.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(code)}))
			if connect.CodeOf(err) != code {
				t.Fatalf("err = %v, want %v", err, code)
			}
		}}
	}
	calls := []call{
		{name: "ok", run: func(t *testing.T, c pingv1connect.PingServiceClient) {
			if _, err := c.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatal(err)
			}
		}},
		fail(connect.CodeNotFound), fail(connect.CodeInternal), fail(connect.CodeUnavailable),
		fail(connect.CodeCanceled), fail(connect.CodeDeadlineExceeded),
		{name: "panic", run: func(t *testing.T, c pingv1connect.PingServiceClient) {
			_, _ = c.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: "panic"}))
		}},
	}
	for _, tc := range streamCases {
		calls = append(calls, call{name: tc.name, run: func(t *testing.T, c pingv1connect.PingServiceClient) {
			runStream(t, c, tc.procedure, tc.numbers)
		}})
	}
	kit := newTracedPing(t, func(tp *sdktrace.TracerProvider) (connect.Interceptor, error) {
		return interceptors.Tracing(interceptors.WithTracerProvider(tp),
			interceptors.WithPropagator(propagation.TraceContext{}))
	})
	ref := newTracedPing(t, func(tp *sdktrace.TracerProvider) (connect.Interceptor, error) {
		return otelconnect.NewInterceptor(otelconnect.WithTracerProvider(tp),
			otelconnect.WithPropagator(propagation.TraceContext{}),
			otelconnect.WithTrustRemote(), otelconnect.WithoutMetrics(), otelconnect.WithServerPeerAttributes())
	})
	for _, proto := range protocols {
		for _, tc := range calls {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				got, want := kit.trace(t, proto, tc.run), ref.trace(t, proto, tc.run)
				if !slices.Equal(got, want) {
					t.Errorf("spans differ from otelconnect's:\n got %s\nwant %s",
						strings.Join(got, "\n     "), strings.Join(want, "\n     "))
				}
			})
		}
	}
}

// tracedPing is PingService behind a tracing interceptor (and RequestID,
// which runStream expects, and Recovery, so panics are calls that fail), called by clients with the same interceptor.
type tracedPing struct {
	url   string
	ic    connect.Interceptor
	spans *tracetest.InMemoryExporter
}

func newTracedPing(t *testing.T, newIC func(*sdktrace.TracerProvider) (connect.Interceptor, error)) *tracedPing {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	ic, err := newIC(tp)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{},
		connect.WithInterceptors(ic, interceptors.RequestID(), interceptors.Recovery(slog.New(slog.DiscardHandler)))))
	return &tracedPing{url: serve(t, mux), ic: ic, spans: spans}
}

// trace runs one call and describes its two spans, client first. Calls
// run one at a time: the exporter holds only theirs.
func (p *tracedPing) trace(t *testing.T, proto protocol, run func(*testing.T, pingv1connect.PingServiceClient)) []string {
	t.Helper()
	p.spans.Reset()
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), p.url,
		append([]connect.ClientOption{connect.WithInterceptors(p.ic)}, proto.opts...)...)
	run(t, client)
	waitFor(t, func() bool { return len(p.spans.GetSpans()) >= 2 }, func() string { return "two spans" })
	spans := p.spans.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2: %v", len(spans), spanNames(spans))
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].SpanKind > spans[j].SpanKind }) // client (3) first
	clientSpan, serverSpan := spans[0], spans[1]
	if serverSpan.Parent.SpanID() != clientSpan.SpanContext.SpanID() || !serverSpan.Parent.IsRemote() {
		t.Errorf("server span's parent = %v, want the client span", serverSpan.Parent)
	}
	return []string{describeSpan(clientSpan), describeSpan(serverSpan)}
}

// describeSpan is what a span shows a user, but for the server's port,
// which differs between servers, and the client's, which differs between
// connections.
func describeSpan(s tracetest.SpanStub) string {
	attrs := make([]string, 0, len(s.Attributes))
	for _, kv := range s.Attributes {
		v := kv.Value.String()
		if kv.Key == "server.port" || kv.Key == "network.peer.port" {
			v = "(port)"
		}
		attrs = append(attrs, string(kv.Key)+"="+v)
	}
	sort.Strings(attrs)
	return fmt.Sprintf("%s %s status=%s %q events=%d attrs=%v",
		s.SpanKind, s.Name, s.Status.Code, s.Status.Description, len(s.Events), attrs)
}

// TestTracingWithOtelconnectOptions checks that otelconnect's own options
// hand RPCs to otelconnect: its filter applies and its spans carry its
// instrumentation scope.
func TestTracingWithOtelconnectOptions(t *testing.T) {
	t.Parallel()
	p := newTracedPing(t, func(tp *sdktrace.TracerProvider) (connect.Interceptor, error) {
		return interceptors.Tracing(interceptors.WithTracerProvider(tp),
			interceptors.WithOtelconnectOptions(otelconnect.WithFilter(func(_ context.Context, spec connect.Spec) bool {
				return spec.Procedure != pingv1connect.PingServiceFailProcedure
			})))
	})
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), p.url, connect.WithInterceptors(p.ic))
	if _, err := client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("Fail: %v", err)
	}
	// Spans end before the call returns on both sides (the exporter is
	// synchronous), so a filtered call has left none.
	if spans := p.spans.GetSpans(); len(spans) != 0 {
		t.Fatalf("filtered call left spans %v", spanNames(spans))
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatal(err)
	}
	spans := p.spans.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2: %v", len(spans), spanNames(spans))
	}
	for _, s := range spans {
		if s.InstrumentationScope.Name != "connectrpc.com/otelconnect" {
			t.Errorf("span %s from %q, want otelconnect's", s.Name, s.InstrumentationScope.Name)
		}
	}
}
