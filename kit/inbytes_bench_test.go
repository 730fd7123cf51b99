package kit_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/internal/benchcpu"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// BenchmarkMaxInFlightBytes measures what KIT_MAX_INFLIGHT_BYTES costs a
// small unary Ping: two kit.Servers with the default chain, one with the
// bound off and one with it on (64MiB, never reached), called in turn,
// chainBlock calls at a time, as BenchmarkDefaultChain does. It reports
// allocations per call of each, and the median ratio of a block's CPU
// time with the bound to the next block's without.
func BenchmarkMaxInFlightBytes(b *testing.B) {
	for _, proto := range benchProtocols {
		b.Run(proto.name, func(b *testing.B) {
			calls := [2]func(){}
			for i, limit := range []int64{0, 64 << 20} {
				srv := kittest.NewServer(b, kit.Config{MaxInFlightBytes: limit}, func(s *kit.Server) {
					s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
				}, kit.WithLogger(kit.NewLogger(dropWriter{}, "json", nil)))
				httpClient := srv.HTTP2Client()
				if proto.http1 {
					httpClient = srv.HTTP1Client()
				}
				client := pingv1connect.NewPingServiceClient(httpClient, srv.URL, proto.opts...)
				req := connect.NewRequest(&pingv1.PingRequest{Number: 42, Text: "hello"})
				calls[i] = func() {
					if _, err := client.Ping(b.Context(), req); err != nil {
						b.Fatal(err)
					}
				}
				calls[i]()
			}
			allocs := [2]float64{testing.AllocsPerRun(500, calls[0]), testing.AllocsPerRun(500, calls[1])}
			var ratios []float64
			b.ResetTimer()
			for n := 0; n < b.N; n += chainBlock {
				var cpu [2]time.Duration
				for i, call := range calls {
					c0 := benchcpu.Process()
					for range chainBlock {
						call()
					}
					cpu[i] = benchcpu.Process() - c0
				}
				if cpu[0] > 0 {
					ratios = append(ratios, float64(cpu[1])/float64(cpu[0]))
				}
			}
			b.StopTimer()
			b.ReportMetric(allocs[0], "off-allocs/call")
			b.ReportMetric(allocs[1], "on-allocs/call")
			if len(ratios) > 0 {
				b.ReportMetric(100*(median(ratios)-1), "%cpu-added")
			}
		})
	}
}
