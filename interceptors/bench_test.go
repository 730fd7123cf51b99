package interceptors_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/benchcpu"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
)

// BenchmarkChain measures one unary Ping over loopback HTTP (a real server
// and client in this process) without interceptors ("bare") and through the
// default server chain ("chain": logging at info to a JSON handler writing
// to io.Discard, metrics in a registry, tracing with a real SDK provider
// that samples nothing, validation, and the HTTPVersion wrapper), on
// HTTP/1.1 and on HTTP/2 (h2c). "chain+client" adds the default client
// chain to the client. See BENCHMARKS.md, section 2.
func BenchmarkChain(b *testing.B) {
	for _, transport := range []struct {
		name  string
		http1 bool
	}{{name: "http1", http1: true}, {name: "h2c"}} {
		for _, setup := range []struct {
			name           string
			server, client bool
		}{{name: "bare"}, {name: "chain", server: true}, {name: "chain+client", server: true, client: true}} {
			b.Run(transport.name+"/"+setup.name, func(b *testing.B) {
				var handlerOpts []connect.HandlerOption
				var clientOpts []connect.ClientOption
				wrap := func(h http.Handler) http.Handler { return h }
				if setup.server {
					handlerOpts = append(handlerOpts, connect.WithInterceptors(benchChain(b).Server()...))
					wrap = interceptors.HTTPVersion
				}
				if setup.client {
					clientOpts = append(clientOpts, connect.WithInterceptors(benchChain(b).Client()...))
				}
				mux := http.NewServeMux()
				mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, handlerOpts...))
				client := pingv1connect.NewPingServiceClient(httpClient(b, transport.http1), serve(b, wrap(mux)), clientOpts...)
				req := connect.NewRequest(&pingv1.PingRequest{Number: 42, Text: "hello"})
				ctx := b.Context()
				b.ReportAllocs()
				stopCPU := benchcpu.Start(b)
				for b.Loop() {
					if _, err := client.Ping(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
				stopCPU()
			})
		}
	}
}

// benchChain is the default chain as a production service runs it with
// tracing on but sampling off.
func benchChain(b *testing.B) *interceptors.Chain {
	b.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	b.Cleanup(func() { _ = tp.Shutdown(b.Context()) })
	return benchChainWith(b, tp)
}

// benchChainWith is the default chain with the tracer provider tp.
func benchChainWith(b *testing.B, tp trace.TracerProvider) *interceptors.Chain {
	b.Helper()
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	chain, err := interceptors.Default(logger, prometheus.NewRegistry(), interceptors.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	return chain
}

// BenchmarkChainInMemory serves the same Ping with ServeHTTP on a recorder,
// without a network, so that the chain's own cost shows with less noise:
// bare, the whole chain, the chain with a no-op tracer provider (what
// internal/telemetry gives when no exporter is set up), the chain sampling
// every call, and each piece alone. The -cold variants sweep 8 MiB of
// memory before each call, as an idle server's caches are after the kernel
// and other work ran, and report serve-ns/op, the time of ServeHTTP alone:
// what the chain costs when its code and data must come from memory
// (BENCHMARKS.md 1.13).
func BenchmarkChainInMemory(b *testing.B) {
	body, err := proto.Marshal(&pingv1.PingRequest{Number: 42, Text: "hello"})
	if err != nil {
		b.Fatal(err)
	}
	pieces := func(pick func(*interceptors.Chain) connect.Interceptor) func(*testing.B) []connect.Interceptor {
		return func(b *testing.B) []connect.Interceptor { return []connect.Interceptor{pick(benchChain(b))} }
	}
	for _, setup := range []struct {
		name         string
		interceptors func(*testing.B) []connect.Interceptor
		httpVersion  bool
		cold         bool
	}{
		{name: "bare"},
		{name: "bare-cold", cold: true},
		{name: "chain-noop-tracer-cold", interceptors: func(b *testing.B) []connect.Interceptor {
			return benchChainWith(b, noop.NewTracerProvider()).Server()
		}, httpVersion: true, cold: true},
		{name: "chain", interceptors: func(b *testing.B) []connect.Interceptor { return benchChain(b).Server() }, httpVersion: true},
		{name: "chain-noop-tracer", interceptors: func(b *testing.B) []connect.Interceptor {
			return benchChainWith(b, noop.NewTracerProvider()).Server()
		}, httpVersion: true},
		{name: "chain-sampled", interceptors: func(b *testing.B) []connect.Interceptor {
			// Every span sampled (and exported nowhere): what a traced call
			// costs, with the exemplar on its latency (BENCHMARKS.md 10).
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
			b.Cleanup(func() { _ = tp.Shutdown(b.Context()) })
			return benchChainWith(b, tp).Server()
		}, httpVersion: true},
		{name: "httpversion", httpVersion: true},
		{name: "tracing", interceptors: pieces(func(c *interceptors.Chain) connect.Interceptor { return c.Tracing })},
		{name: "requestid", interceptors: pieces(func(c *interceptors.Chain) connect.Interceptor { return c.RequestID })},
		{name: "logging", interceptors: pieces(func(c *interceptors.Chain) connect.Interceptor { return c.Logging })},
		{name: "metrics", interceptors: pieces(func(c *interceptors.Chain) connect.Interceptor { return c.Metrics })},
		{name: "recovery", interceptors: pieces(func(c *interceptors.Chain) connect.Interceptor { return c.Recovery })},
		{name: "validation", interceptors: pieces(func(c *interceptors.Chain) connect.Interceptor { return c.Validation })},
	} {
		b.Run(setup.name, func(b *testing.B) {
			var handlerOpts []connect.HandlerOption
			if setup.interceptors != nil {
				handlerOpts = append(handlerOpts, connect.WithInterceptors(setup.interceptors(b)...))
			}
			mux := http.NewServeMux()
			mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, handlerOpts...))
			var h http.Handler = mux
			if setup.httpVersion {
				h = interceptors.HTTPVersion(mux)
			}
			// What a server with interceptors.ConnContext gives its requests.
			connCtx := interceptors.ConnContext(b.Context(), nil)
			var sweep []byte
			if setup.cold {
				sweep = make([]byte, 8<<20)
			}
			var serving time.Duration
			b.ReportAllocs()
			stopCPU := benchcpu.Start(b)
			for b.Loop() {
				for i := 0; i < len(sweep); i += 64 { // a cache line each
					sweep[i]++
				}
				req := httptest.NewRequestWithContext(connCtx, http.MethodPost, pingv1connect.PingServicePingProcedure, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/proto")
				rec := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(rec, req)
				serving += time.Since(start)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			stopCPU()
			b.ReportMetric(float64(serving.Nanoseconds())/float64(b.N), "serve-ns/op")
		})
	}
}
