package interceptors

import (
	"sync"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPubsubMetricsLookup checks that the children of the destination
// looked up last are those of that destination, whatever came before:
// publishes and deliveries in turn, topics in turn, and past the cap.
func TestPubsubMetricsLookup(t *testing.T) {
	t.Parallel()
	m, err := newPubsubMetrics(prometheus.NewRegistry(), &metricsConfig{buckets: prometheus.DefBuckets, maxProcedures: 3})
	if err != nil {
		t.Fatal(err)
	}
	dests := []destination{
		{topic: "a"}, {topic: "a", subscription: "s"}, {topic: "b"}, {topic: "a"}, {topic: "b"},
		{topic: "a", subscription: "s"}, {topic: "c"}, {topic: "d"}, {topic: "c"}, {topic: "a"},
	}
	for i, d := range dests {
		want := d
		if d.topic == "c" || d.topic == "d" { // past the cap of 3
			want = d.overflow()
		}
		if got := m.lookup(d).dest; got != want {
			t.Errorf("lookup %d of %+v: children of %+v, want %+v", i, d, got, want)
		}
	}
}

// TestPubsubMetricsConcurrent counts publishes and deliveries of several
// topics from many goroutines at once, each switching destination at every
// call, so that the children kept for the last destination change under
// the others' feet (run with -race): every count lands on its own series,
// those past the cap on "other".
func TestPubsubMetricsConcurrent(t *testing.T) {
	t.Parallel()
	const goroutines, rounds, maxDestinations = 8, 300, 5
	m, err := newPubsubMetrics(prometheus.NewRegistry(), &metricsConfig{buckets: prometheus.DefBuckets, maxProcedures: maxDestinations})
	if err != nil {
		t.Fatal(err)
	}
	topics := []string{"t0", "t1", "t2", "t3"}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				topic := topics[(g+i)%len(topics)]
				m.observe(t.Context(), &msgctx.Info{Operation: msgctx.Publish, Topic: topic}, time.Now(), nil)
				m.observe(t.Context(), &msgctx.Info{Operation: msgctx.Process, Topic: topic, Subscription: "s"}, time.Now(), nil)
			}
		})
	}
	wg.Wait()
	// Each destination had goroutines*rounds/len(topics) calls: a series of
	// its own holds them all or none (the destination went to "other").
	each := float64(goroutines * rounds / len(topics))
	published, handled := 0.0, 0.0
	for _, topic := range topics {
		p := testutil.ToFloat64(m.published.WithLabelValues(topic, "OK"))
		h := testutil.ToFloat64(m.handled.WithLabelValues(topic, "s", "ack"))
		if (p != 0 && p != each) || (h != 0 && h != each) {
			t.Errorf("topic %s: %v published, %v handled, want %v or 0 each", topic, p, h, each)
		}
		published += p
		handled += h
	}
	published += testutil.ToFloat64(m.published.WithLabelValues(otherLabel, "OK"))
	handled += testutil.ToFloat64(m.handled.WithLabelValues(otherLabel, otherLabel, "ack"))
	if want := float64(goroutines * rounds); published != want || handled != want {
		t.Errorf("published %v, handled %v in all, want %v each", published, handled, want)
	}
	// The first maxDestinations destinations have series of their own; the
	// map holds them and the "other" ones only.
	if n := len(*m.keys.Load()); n > maxDestinations+2 {
		t.Errorf("%d destinations in the map, want at most %d", n, maxDestinations+2)
	}
}
