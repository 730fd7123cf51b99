package interceptors_test

import (
	"log/slog"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/msgctx"
)

// TestNativeHistograms checks the three latency histograms after a sampled
// call and delivery: with WithNativeHistograms each series is a native
// histogram (a schema, a zero bucket, populated spans) with an exemplar of
// its own, and keeps its classic buckets and their exemplar; without it,
// a classic histogram alone.
func TestNativeHistograms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   []interceptors.Option
		native bool
	}{
		{name: "classic"},
		{name: "native", opts: []interceptors.Option{interceptors.WithNativeHistograms()}, native: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newObserved(t, slog.LevelInfo, tc.opts...)
			mux := http.NewServeMux()
			mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(o.chain.Server()...)))
			client := pingv1connect.NewPingServiceClient(httpClient(t, false), serve(t, mux),
				connect.WithInterceptors(o.chain.Client()...))
			if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatal(err)
			}
			deliver(t, subscriber(t, o), &msgctx.Info{
				Operation: msgctx.Process, System: "mem", Topic: topic, Subscription: subscription,
				MessageID: "msg-1", MessageType: topic, Attempt: 1, MaxAttempts: 5,
			}, &pingv1.PingRequest{Text: "ok"})

			ping := map[string]string{"grpc_method": "Ping"}
			for name, labels := range map[string]map[string]string{
				"grpc_server_handling_seconds": ping,
				"grpc_client_handling_seconds": ping,
				"pubsub_handling_seconds":      {"topic": topic},
			} {
				series := gatherSeries(t, o.reg, name, labels)
				if len(series) != 1 {
					t.Fatalf("%s: %d series, want 1", name, len(series))
				}
				h := series[0].GetHistogram()
				if h.GetSampleCount() != 1 || len(h.GetBucket()) != len(prometheus.DefBuckets) {
					t.Errorf("%s: %d observations in %d classic buckets, want 1 in %d", name,
						h.GetSampleCount(), len(h.GetBucket()), len(prometheus.DefBuckets))
				}
				if ids := exemplarTraceIDs(t, o.reg, name, labels); len(ids) != 1 {
					t.Errorf("%s: classic exemplars %q, want one", name, ids)
				}
				native := h.Schema != nil && len(h.GetPositiveSpan()) > 0 && h.GetZeroThreshold() > 0
				if native != tc.native {
					t.Errorf("%s: native histogram %v (schema %v, spans %v), want %v", name,
						native, h.Schema, h.GetPositiveSpan(), tc.native)
				}
				if tc.native && (len(h.GetExemplars()) != 1 || h.GetSchema() != 3) {
					t.Errorf("%s: schema %d (factor 1.1 is 3) and %d native exemplars, want 3 and 1", name,
						h.GetSchema(), len(h.GetExemplars()))
				}
			}
		})
	}
}
