package interceptors_test

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/msgctx"
)

// exemplarTraceIDs returns the trace_id of every exemplar in the buckets of
// the histogram name's series that have labels.
func exemplarTraceIDs(tb testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) []string {
	tb.Helper()
	var ids []string
	for _, m := range gatherSeries(tb, reg, name, labels) {
		for _, b := range m.GetHistogram().GetBucket() {
			for _, lp := range b.GetExemplar().GetLabel() {
				if lp.GetName() == "trace_id" {
					ids = append(ids, lp.GetValue())
				}
			}
		}
	}
	return ids
}

// TestMessageExemplar delivers a message whose producer's span was sampled:
// pubsub_handling_seconds carries the trace id of the delivery's consumer
// span when the chain makes spans, and no exemplar when it only passes the
// trace context on (a no-op tracer provider), since no span of this
// process was exported.
func TestMessageExemplar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []interceptors.Option
		want []string
	}{
		{name: "spans", want: []string{"0af7651916cd43dd8448eb211c80319c"}},
		{name: "propagation only", opts: []interceptors.Option{interceptors.WithTracerProvider(noop.NewTracerProvider())}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newObserved(t, slog.LevelInfo, tc.opts...)
			info := &msgctx.Info{
				Operation: msgctx.Process, System: "mem", Topic: topic, Subscription: subscription,
				MessageID: "msg-1", MessageType: topic, Attempt: 1, MaxAttempts: 5,
			}
			deliver(t, subscriber(t, o), info, &pingv1.PingRequest{Text: "ok"})
			labels := map[string]string{"topic": topic, "subscription": subscription}
			if got := metricValue(t, o.reg, "pubsub_handling_seconds", labels); got != 1 {
				t.Fatalf("pubsub_handling_seconds count = %v, want 1", got)
			}
			got := exemplarTraceIDs(t, o.reg, "pubsub_handling_seconds", labels)
			if len(got) != len(tc.want) || (len(got) == 1 && got[0] != tc.want[0]) {
				t.Errorf("exemplar trace ids %q, want %q", got, tc.want)
			}
		})
	}
}
