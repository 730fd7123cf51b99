package kit_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/benchcpu"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// chainBlock is how many calls go to one server before the benchmark
// switches to the other: a few milliseconds, short enough that both see
// the same machine.
const chainBlock = 32

// benchProtocols are the protocols and HTTP versions that the serving
// benchmarks call in.
var benchProtocols = []struct {
	name  string
	http1 bool
	opts  []connect.ClientOption
}{
	{name: "connect/http1", http1: true},
	{name: "connect/h2c"},
	{name: "grpc/h2c", opts: []connect.ClientOption{connect.WithGRPC()}},
}

// BenchmarkDefaultChain measures what kit.Server's default interceptor
// chain adds to one unary Ping, as kit serves it. Two kit.Servers run on
// loopback in this process, one without the chain
// (kit.WithoutDefaultInterceptors) and one with it (JSON log lines at info
// through kit.NewLogger to a writer that drops them, batched as on stderr;
// metrics; tracing with a real SDK provider that samples nothing;
// validation), and a connect-go client
// calls them in turn, chainBlock calls at a time, over Connect (binary) on
// HTTP/1.1 and h2c, and gRPC on h2c.
//
// An op is one call to each server. The benchmark reports each server's
// calls' CPU time (process user+system, both sides of the call) and wall
// time, and the chain's added cost as the median, over the blocks, of the
// ratio of a chain block to the bare block next to it: pairs taken
// milliseconds apart cancel the drift of a shared machine that separate
// runs do not. Allocations per call are counted apart. See BENCHMARKS.md,
// section 2.
func BenchmarkDefaultChain(b *testing.B) {
	for _, proto := range benchProtocols {
		b.Run(proto.name, func(b *testing.B) {
			calls := [2]func(){}
			for i, chain := range []bool{false, true} {
				client := chainBenchClient(b, chain, proto.http1, proto.opts)
				req := connect.NewRequest(&pingv1.PingRequest{Number: 42, Text: "hello"})
				calls[i] = func() {
					if _, err := client.Ping(b.Context(), req); err != nil {
						b.Fatal(err)
					}
				}
				calls[i]() // connect, and warm up
			}
			allocs := [2]float64{testing.AllocsPerRun(200, calls[0]), testing.AllocsPerRun(200, calls[1])}

			var cpu, wall [2]time.Duration
			var cpuRatios, wallRatios []float64
			b.ResetTimer()
			for n := 0; n < b.N; n += chainBlock {
				var blockCPU, blockWall [2]time.Duration
				for i, call := range calls {
					c0, w0 := benchcpu.Process(), time.Now()
					for range chainBlock {
						call()
					}
					blockCPU[i], blockWall[i] = benchcpu.Process()-c0, time.Since(w0)
					cpu[i] += blockCPU[i]
					wall[i] += blockWall[i]
				}
				if blockCPU[0] > 0 {
					cpuRatios = append(cpuRatios, float64(blockCPU[1])/float64(blockCPU[0]))
				}
				wallRatios = append(wallRatios, float64(blockWall[1])/float64(blockWall[0]))
			}
			b.StopTimer()
			total := float64(len(wallRatios) * chainBlock)
			b.ReportMetric(float64(wall[0].Nanoseconds())/total, "bare-ns/call")
			b.ReportMetric(float64(wall[1].Nanoseconds())/total, "chain-ns/call")
			b.ReportMetric(100*(median(wallRatios)-1), "%wall-added")
			if len(cpuRatios) > 0 {
				b.ReportMetric(float64(cpu[0].Nanoseconds())/total, "bare-cpu-ns/call")
				b.ReportMetric(float64(cpu[1].Nanoseconds())/total, "chain-cpu-ns/call")
				b.ReportMetric(100*(median(cpuRatios)-1), "%cpu-added")
			}
			b.ReportMetric(allocs[0], "bare-allocs/call")
			b.ReportMetric(allocs[1], "chain-allocs/call")
		})
	}
}

// chainBenchClient runs a kit.Server serving PingService, with the default
// chain or without, and returns a client of it.
func chainBenchClient(b *testing.B, chain, http1 bool, opts []connect.ClientOption) pingv1connect.PingServiceClient {
	b.Helper()
	level := new(slog.LevelVar) // info
	kitOpts := []kit.Option{kit.WithLogger(kit.NewLogger(dropWriter{}, "json", level)), kit.WithLogLevel(level)}
	if chain {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
		b.Cleanup(func() { _ = tp.Shutdown(b.Context()) })
		kitOpts = append(kitOpts, kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
	} else {
		kitOpts = append(kitOpts, kit.WithoutDefaultInterceptors())
	}
	srv := kittest.NewServer(b, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	}, kitOpts...)
	httpClient := srv.HTTP2Client()
	if http1 {
		httpClient = srv.HTTP1Client()
	}
	return pingv1connect.NewPingServiceClient(httpClient, srv.URL, opts...)
}

// median returns the middle of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// dropWriter drops what it is given. Unlike io.Discard, which NewLogger
// writes to directly, it gets the batching a real writer (stderr) gets.
type dropWriter struct{}

func (dropWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkNewLoggerLine measures one RPC line (the shape of
// interceptors.Logging's) through NewLogger. "paced" logs a line every
// 50 µs, as a server at 20 000 calls/s does, spinning in between as a
// handler would, and reports caller-ns/line: what the logging call costs
// the goroutine that logs, which is the call's path. "flat-out" logs back
// to back and reports the process's CPU per line (cpu-ns/op), the flusher's
// formatting and writing included.
func BenchmarkNewLoggerLine(b *testing.B) {
	newLogger := func() *slog.Logger {
		return kit.NewLogger(dropWriter{}, "json", slog.LevelInfo).With(
			"kind", "server", "procedure", "/connectkit.ping.v1.PingService/Ping",
			"stream", "unary", "protocol", "connect", "http", "HTTP/1.1")
	}
	line := func(ctx context.Context, logger *slog.Logger) {
		logger.LogAttrs(ctx, slog.LevelInfo, "rpc",
			slog.String("peer", "127.0.0.1:54321"),
			slog.String("code", "ok"),
			slog.Duration("duration", 1234*time.Microsecond),
			slog.String("request_id", "0d2c4f1e-2b7a-4c1d-9e3f-5a6b7c8d9e0f"),
			slog.String("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
			slog.String("span_id", "00f067aa0ba902b7"))
	}
	b.Run("paced", func(b *testing.B) {
		const gap = 50 * time.Microsecond
		logger := newLogger()
		var caller time.Duration
		for b.Loop() {
			t0 := time.Now()
			line(b.Context(), logger)
			t1 := time.Now()
			caller += t1.Sub(t0)
			for time.Since(t1) < gap {
			}
		}
		b.ReportMetric(float64(caller.Nanoseconds())/float64(b.N), "caller-ns/line")
	})
	b.Run("flat-out", func(b *testing.B) {
		logger := newLogger()
		b.ReportAllocs()
		stop := benchcpu.Start(b)
		for b.Loop() {
			line(b.Context(), logger)
		}
		logger.Warn("end") // what still waits is formatted and written in the measure
		stop()
	})
}
