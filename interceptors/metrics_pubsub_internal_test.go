package interceptors

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPubsubMetricsLookup checks that the children of the destination
// looked up last are those of that destination, whatever came before:
// publishes and deliveries in turn, topics in turn, and past the cap.
func TestPubsubMetricsLookup(t *testing.T) {
	t.Parallel()
	m, err := newPubsubMetrics(prometheus.NewRegistry(), prometheus.DefBuckets, 3)
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
