package interceptors_test

import (
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TestTracingOneTrace checks that a client span and the server span it
// causes are one trace, parent and child, for every stream type and
// protocol, with otelconnect's attributes and the span status of the
// outcome.
func TestTracingOneTrace(t *testing.T) {
	t.Parallel()
	type call struct {
		name, procedure string
		run             func(*testing.T, pingv1connect.PingServiceClient) error
		// span statuses: a caller's error is not the server's
		serverStatus, clientStatus codes.Code
		statusCode                 string
	}
	calls := []call{
		{name: "unary", procedure: pingv1connect.PingServicePingProcedure, statusCode: "OK",
			run: func(t *testing.T, c pingv1connect.PingServiceClient) error {
				_, err := c.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
				return err
			}},
		{name: "caller error", procedure: pingv1connect.PingServiceFailProcedure, statusCode: "NOT_FOUND",
			serverStatus: codes.Unset, clientStatus: codes.Error,
			run: func(t *testing.T, c pingv1connect.PingServiceClient) error {
				_, err := c.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)}))
				return err
			}},
		{name: "panic", procedure: pingv1connect.PingServicePingProcedure, statusCode: "INTERNAL",
			serverStatus: codes.Error, clientStatus: codes.Error,
			run: func(t *testing.T, c pingv1connect.PingServiceClient) error {
				_, err := c.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: "panic"}))
				return err
			}},
		{name: "stream canceled", procedure: pingv1connect.PingServiceCountUpProcedure, statusCode: "CANCELED",
			serverStatus: codes.Unset, clientStatus: codes.Error,
			run: func(t *testing.T, c pingv1connect.PingServiceClient) error {
				return runStream(t, c, pingv1connect.PingServiceCountUpProcedure, []int64{canceledNumber}).err
			}},
	}
	for _, tc := range streamCases {
		if tc.panics {
			continue
		}
		calls = append(calls, call{name: tc.name, procedure: tc.procedure, statusCode: "OK",
			run: func(t *testing.T, c pingv1connect.PingServiceClient) error {
				return runStream(t, c, tc.procedure, tc.numbers).err
			}})
	}
	for _, proto := range protocols {
		for _, tc := range calls {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s := newTestServer(t, serverConfig{})
				if err := tc.run(t, s.pingClient(t, proto.opts...)); (err == nil) != (tc.statusCode == "OK") {
					t.Fatalf("err = %v", err)
				}
				server, client := onlySpan(t, s.server.spans), onlySpan(t, s.client.spans)
				if server.SpanContext.TraceID() != client.SpanContext.TraceID() {
					t.Errorf("server trace %s, client trace %s: want one trace", server.SpanContext.TraceID(), client.SpanContext.TraceID())
				}
				if server.Parent.SpanID() != client.SpanContext.SpanID() || !server.Parent.IsRemote() {
					t.Errorf("server span's parent = %v, want the client span %s", server.Parent, client.SpanContext.SpanID())
				}
				system := "grpc"
				if proto.name == "connect" {
					system = "connectrpc"
				}
				for _, span := range []struct {
					stub   tracetest.SpanStub
					kind   trace.SpanKind
					status codes.Code
				}{{server, trace.SpanKindServer, tc.serverStatus}, {client, trace.SpanKindClient, tc.clientStatus}} {
					if span.stub.Name != tc.procedure[1:] || span.stub.SpanKind != span.kind {
						t.Errorf("span %q of kind %s, want %q of kind %s", span.stub.Name, span.stub.SpanKind, tc.procedure[1:], span.kind)
					}
					if span.stub.Status.Code != span.status {
						t.Errorf("%s span status = %v, want %v", span.kind, span.stub.Status, span.status)
					}
					assertAttributes(t, span.stub.Attributes, map[string]string{
						"rpc.system.name": system, "rpc.method": tc.procedure[1:], "rpc.response.status_code": tc.statusCode,
					})
				}
			})
		}
	}
}

// TestPropagation checks that a server passes its trace context and request
// id on to the services it calls with the client chain and the handler's
// context.
func TestPropagation(t *testing.T) {
	t.Parallel()
	backend := newTestServer(t, serverConfig{})
	frontend := newTestServer(t, serverConfig{})
	frontend.svc.downstream = pingv1connect.NewPingServiceClient(httpClient(t, false), backend.URL,
		connect.WithInterceptors(frontend.server.chain.Client()...))

	resp, err := frontend.pingClient(t).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: "forward"}))
	if err != nil {
		t.Fatal(err)
	}
	requestID := resp.Header().Get("X-Request-Id")
	frontLine := frontend.server.logs.waitLine(t, map[string]any{"msg": "rpc", "kind": "server"})
	outLine := frontend.server.logs.waitLine(t, map[string]any{"msg": "rpc", "kind": "client"})
	backLine := backend.server.logs.waitLine(t, map[string]any{"msg": "rpc", "kind": "server"})
	for _, line := range []map[string]any{frontLine, outLine, backLine} {
		if line["request_id"] != requestID || line["trace_id"] != frontLine["trace_id"] {
			t.Errorf("line %v: want request_id %s and trace_id %s", line, requestID, frontLine["trace_id"])
		}
	}
	backSpan := onlySpan(t, backend.server.spans)
	if got := backSpan.Parent.SpanID().String(); got != outLine["span_id"] {
		t.Errorf("backend span's parent = %s, want the frontend's client span %s", got, outLine["span_id"])
	}
}

func assertAttributes(t *testing.T, attrs []attribute.KeyValue, want map[string]string) {
	t.Helper()
	got := make(map[string]string, len(attrs))
	for _, kv := range attrs {
		got[string(kv.Key)] = kv.Value.String()
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

// TestTracingNoopProvider checks that with a no-op provider (no exporter)
// trace context still goes from caller to logs to the next service.
func TestTracingNoopProvider(t *testing.T) {
	t.Parallel()
	noopChain := serverConfig{serverChainOpts: []interceptors.Option{interceptors.WithTracerProvider(noop.NewTracerProvider())}}
	backend := newTestServer(t, noopChain)
	frontend := newTestServer(t, noopChain)
	frontend.svc.downstream = pingv1connect.NewPingServiceClient(httpClient(t, false), backend.URL,
		connect.WithInterceptors(frontend.server.chain.Client()...))
	for _, proto := range protocols {
		req := connect.NewRequest(&pingv1.PingRequest{Text: "forward"})
		req.Header().Set("Traceparent", producerTraceparent)
		req.Header().Set("X-Request-Id", "noop-"+proto.name)
		client := pingv1connect.NewPingServiceClient(httpClient(t, false), frontend.URL, proto.opts...)
		if _, err := client.Ping(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		for _, logs := range []*logBuffer{frontend.server.logs, backend.server.logs} {
			logs.waitLine(t, map[string]any{
				"msg": "rpc", "kind": "server", "request_id": "noop-" + proto.name,
				"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
			})
		}
	}
	if n := len(frontend.server.spans.GetSpans()) + len(backend.server.spans.GetSpans()); n != 0 {
		t.Errorf("%d spans recorded with a no-op provider", n)
	}
}
