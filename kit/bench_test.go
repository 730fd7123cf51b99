package kit_test

import (
	"io"
	"log/slog"
	"testing"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/benchcpu"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// BenchmarkDefaultChain measures what kit.Server's default interceptor
// chain adds to one unary Ping, as kit serves it: a kit.Server on loopback
// without the chain ("nochain": kit.WithoutDefaultInterceptors) and with it
// ("chain": JSON log lines at info through kit.NewLogger to io.Discard,
// metrics, tracing with a real SDK provider that samples nothing,
// validation), called by a connect-go client in this process over Connect
// (binary) on HTTP/1.1 and h2c, and gRPC on h2c. See BENCHMARKS.md,
// section 2.
func BenchmarkDefaultChain(b *testing.B) {
	for _, proto := range []struct {
		name  string
		http1 bool
		opts  []connect.ClientOption
	}{
		{name: "connect/http1", http1: true},
		{name: "connect/h2c"},
		{name: "grpc/h2c", opts: []connect.ClientOption{connect.WithGRPC()}},
	} {
		for _, chain := range []bool{false, true} {
			name := proto.name + "/nochain"
			if chain {
				name = proto.name + "/chain"
			}
			b.Run(name, func(b *testing.B) {
				level := new(slog.LevelVar) // info
				opts := []kit.Option{kit.WithLogger(kit.NewLogger(io.Discard, "json", level)), kit.WithLogLevel(level)}
				if chain {
					tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
					b.Cleanup(func() { _ = tp.Shutdown(b.Context()) })
					opts = append(opts, kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
				} else {
					opts = append(opts, kit.WithoutDefaultInterceptors())
				}
				srv := kittest.NewServer(b, kit.Config{}, func(s *kit.Server) {
					s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
				}, opts...)
				httpClient := srv.HTTP2Client()
				if proto.http1 {
					httpClient = srv.HTTP1Client()
				}
				client := pingv1connect.NewPingServiceClient(httpClient, srv.URL, proto.opts...)
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
