package pubsubtest

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
)

// testBacklog: a subscription's pubsub_pending_messages and
// pubsub_unacknowledged_messages count, at each scrape, the messages its
// handler has yet to take and those it holds, fall to 0 once it handled
// them all, and go away when the subscriber stops.
func testBacklog(t *testing.T, h *harness) {
	reg := prometheus.NewRegistry()
	release := make(chan struct{})
	handle := func(ctx context.Context, _ *pingv1.PingRequest) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cfg := testDelivery()
	cfg.Concurrency, cfg.Prefetch = 1, 1
	stop := Start(t, newSubscriber(t, h.broker, "backlog", "slow", handle, pubsub.WithDelivery(cfg), pubsub.WithRegistry(reg)))
	pub := h.publisher(t, h.broker, "backlog")
	const n = 10
	for range n {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	backlog := func() (pending, unacked float64, ok bool) {
		p, okp := metricValue(t, reg, "pubsub_pending_messages", "backlog", "slow")
		u, oku := metricValue(t, reg, "pubsub_unacknowledged_messages", "backlog", "slow")
		return p, u, okp && oku
	}
	WaitFor(t, "a backlog of 10 messages, one or more held by the handler", func() bool {
		p, u, ok := backlog()
		return ok && p+u == n && u >= 1 && p >= n-3
	})
	close(release)
	WaitFor(t, "an empty backlog", func() bool {
		p, u, ok := backlog()
		return ok && p == 0 && u == 0
	})
	stop()
	if _, _, ok := backlog(); ok {
		t.Error("the backlog gauges are still reported after the subscriber stopped")
	}
}

// metricValue returns the value of the gauge or counter of reg named name
// for topic and subscription, and whether reg reports it.
func metricValue(tb testing.TB, reg *prometheus.Registry, name, topic, subscription string) (float64, bool) {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["topic"] == topic && labels["subscription"] == subscription {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
