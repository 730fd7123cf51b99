package pubsub

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// stuckBacklog is a Consumer's Backlog that does not heed its context: it
// answers once release is closed.
type stuckBacklog struct {
	release chan struct{}
	calls   atomic.Int32
}

func (s *stuckBacklog) Backlog(context.Context) (pending, unacknowledged int64, err error) {
	s.calls.Add(1)
	<-s.release
	return 1, 1, nil
}

// fixedBacklog answers at once.
type fixedBacklog struct{ pending, unacked int64 }

func (f fixedBacklog) Backlog(context.Context) (pending, unacknowledged int64, err error) {
	return f.pending, f.unacked, nil
}

// TestBacklogScrapeDoesNotWaitForAStuckBroker: a scrape returns at the backlog
// timeout even when a Consumer's Backlog ignores its context (the admin
// /metrics handler has no timeout), with the gauges of the subscriptions
// that answered; a stuck Consumer is not asked again until it answers.
func TestBacklogScrapeDoesNotWaitForAStuckBroker(t *testing.T) {
	t.Parallel()
	c := newBacklogCollector()
	c.timeout = 10 * time.Millisecond
	stuck := &stuckBacklog{release: make(chan struct{})}
	t.Cleanup(func() { close(stuck.release) })
	c.add("topic", "stuck", stuck)
	c.add("topic", "fine", fixedBacklog{pending: 7, unacked: 2})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for scrape := range 3 {
		gathered := make(chan map[string]float64, 1)
		go func() {
			families, err := reg.Gather()
			if err != nil {
				t.Errorf("Gather: %v", err)
			}
			values := map[string]float64{}
			for _, f := range families {
				for _, m := range f.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "subscription" {
							values[f.GetName()+"/"+l.GetValue()] = m.GetGauge().GetValue()
						}
					}
				}
			}
			gathered <- values
		}()
		var values map[string]float64
		select {
		case values = <-gathered:
		case <-time.After(time.Minute): // the bound of a hang, not of speed
			t.Fatalf("scrape %d still waits for a Backlog that ignores its context after a minute", scrape)
		}
		want := map[string]float64{"pubsub_pending_messages/fine": 7, "pubsub_unacknowledged_messages/fine": 2}
		if len(values) != len(want) || values["pubsub_pending_messages/fine"] != 7 || values["pubsub_unacknowledged_messages/fine"] != 2 {
			t.Errorf("scrape %d gathered %v; want %v", scrape, values, want)
		}
	}
	if n := stuck.calls.Load(); n != 1 {
		t.Errorf("the stuck Backlog was asked %d times in 3 scrapes; want 1 (not again until it answers)", n)
	}
}

// pairedBacklog answers once two scrapes ask it at the same time, and
// fails at its context's end otherwise.
type pairedBacklog struct{ arrived chan struct{} }

func (p pairedBacklog) Backlog(ctx context.Context) (pending, unacknowledged int64, err error) {
	select {
	case p.arrived <- struct{}{}: // the other ask is waiting
		return 3, 0, nil
	case <-p.arrived: // the other ask came
		return 3, 0, nil
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// TestBacklogConcurrentScrapesEachAsk: two scrapes at once (two Prometheus
// servers) both report the gauges: a subscription asked by one scrape is
// asked by the other too, unless an ask outlived its scrape.
func TestBacklogConcurrentScrapesEachAsk(t *testing.T) {
	t.Parallel()
	c := newBacklogCollector()
	c.timeout = time.Minute // the paired asks end it; a lone one waits it out and fails
	c.add("topic", "sub", pairedBacklog{arrived: make(chan struct{})})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			families, err := reg.Gather()
			if err != nil {
				t.Errorf("Gather: %v", err)
			}
			if len(families) != 2 {
				t.Errorf("a scrape gathered %d families; want the 2 gauges", len(families))
			}
		})
	}
	wg.Wait()
}
