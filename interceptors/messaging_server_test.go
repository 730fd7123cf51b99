package interceptors_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/msgctx"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestMessageServerAddress checks server.address and server.port on the
// spans of publishes and deliveries: the broker's server as
// msgctx.Info.Server gives it, asked only when the span is sampled.
func TestMessageServerAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		server     string // what Info.Server returns
		noServer   bool   // Info.Server nil: a broker without a server
		unsampled  bool
		host, port string // the attributes wanted; "" for none
	}{
		{name: "host and port", server: "nats.internal:4222", host: "nats.internal", port: "4222"},
		{name: "ipv6", server: "[::1]:4222", host: "::1", port: "4222"},
		{name: "between connections", server: ""},
		{name: "no server", noServer: true},
		{name: "unsampled", server: "nats.internal:4222", unsampled: true},
	} {
		for _, op := range []msgctx.Operation{msgctx.Publish, msgctx.Process} {
			t.Run(tc.name+"/"+string(op), func(t *testing.T) {
				t.Parallel()
				var asked atomic.Int32
				info := &msgctx.Info{Operation: op, System: "nats", Topic: topic, MessageID: "m-1", MessageType: topic}
				if op == msgctx.Process {
					info.Subscription, info.Attempt = subscription, 1
				}
				if !tc.noServer {
					info.Server = func() string { asked.Add(1); return tc.server }
				}
				spans := tracetest.NewInMemoryExporter()
				sampler := sdktrace.AlwaysSample()
				if tc.unsampled {
					sampler = sdktrace.NeverSample()
				}
				ic, err := interceptors.Tracing(interceptors.WithTracerProvider(
					sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans), sdktrace.WithSampler(sampler))))
				if err != nil {
					t.Fatal(err)
				}
				traceMessage(t, ic, info)
				if tc.unsampled {
					if n := asked.Load(); n != 0 || len(spans.GetSpans()) != 0 {
						t.Errorf("unsampled: Server asked %d times, %d spans recorded; want neither", n, len(spans.GetSpans()))
					}
					return
				}
				span := onlySpan(t, spans)
				got := map[string]string{}
				for _, kv := range span.Attributes {
					if kv.Key == "server.address" || kv.Key == "server.port" {
						got[string(kv.Key)] = kv.Value.String()
					}
				}
				want := map[string]string{}
				if tc.host != "" {
					want = map[string]string{"server.address": tc.host, "server.port": tc.port}
				}
				if len(got) != len(want) || got["server.address"] != want["server.address"] || got["server.port"] != want["server.port"] {
					t.Errorf("span's server attributes %v, want %v", got, want)
				}
				if n := asked.Load(); !tc.noServer && n != 1 {
					t.Errorf("Server asked %d times, want once", n)
				}
			})
		}
	}
}

// traceMessage makes the publish or the delivery of info through ic alone:
// a delivery served by a connect handler, a publish sent by a connect
// client to a broker that takes it.
func traceMessage(t *testing.T, ic connect.Interceptor, info *msgctx.Info) {
	t.Helper()
	ok := func(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
		return connect.NewResponse(&pingv1.PingResponse{}), nil
	}
	if info.Operation == msgctx.Process {
		deliver(t, connect.NewUnaryHandler(delivery, ok, connect.WithInterceptors(ic)), info, &pingv1.PingRequest{})
		return
	}
	const publish = "/" + topic + "/publish"
	mux := http.NewServeMux()
	mux.Handle(publish, connect.NewUnaryHandler(publish, ok))
	client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](httpClient(t, false), serve(t, mux)+publish,
		connect.WithInterceptors(ic))
	if _, err := client.CallUnary(msgctx.NewContext(t.Context(), info), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Fatal(err)
	}
}
