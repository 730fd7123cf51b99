package interceptors_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// BenchmarkLimits measures what RateLimit and MaxInFlight add to a unary
// call in memory, for a call admitted and one refused, against the bare
// call ("none"). Run in parallel (-cpu) to see the shared bucket's and
// counter's contention. See BENCHMARKS.md, section 4.
func BenchmarkLimits(b *testing.B) {
	var handler connect.UnaryFunc = func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
		return nil, nil
	}
	for _, tc := range []struct {
		name  string
		limit connect.Interceptor
	}{
		{"none", nil},
		{"RateLimit/admitted", interceptors.RateLimit(1e12, 1<<30)},
		{"RateLimit/per-procedure", interceptors.RateLimit(1e12, 1<<30, interceptors.WithLimitPerProcedure())},
		{"RateLimit/refused", interceptors.RateLimit(slowly, 1)},
		{"MaxInFlight/admitted", interceptors.MaxInFlight(1 << 30)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			call := handler
			if tc.limit != nil {
				call = tc.limit.WrapUnary(handler)
			}
			req := &specRequest{connect.NewRequest(&pingv1.PingRequest{}), pingv1connect.PingServicePingProcedure}
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _ = call(ctx, req)
				}
			})
		})
	}
}
