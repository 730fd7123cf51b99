package pubsub

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// backlogged is a Consumer that reports its subscription's backlog (see
// [Consumer]).
type backlogged interface {
	Backlog(ctx context.Context) (pending, unacknowledged int64, err error)
}

// backlogTimeout bounds the broker's answer at each scrape: a broker that
// does not answer leaves the gauges out of that scrape rather than holding
// it to Prometheus's scrape timeout.
const backlogTimeout = time.Second

// backlogCollector reports, at each scrape, the backlog of every running
// subscription of the registry's subscribers, as the broker counts it then:
// a gauge updated as messages flow would stand still when they stop
// flowing, which is when a growing backlog matters. The subscribers of one
// registry share it.
type backlogCollector struct {
	pending, unacked *prometheus.Desc
	timeout          time.Duration // backlogTimeout; shorter in tests

	mu   sync.Mutex
	subs map[[2]string][]backlogged // by topic and subscription; the first answers
	late map[[2]string]*backlogAsk  // asks that outlived their scrape, until answered
}

func newBacklogCollector() *backlogCollector {
	labels := []string{"topic", "subscription"}
	return &backlogCollector{
		pending: prometheus.NewDesc("pubsub_pending_messages",
			"Messages of the subscription not yet delivered to any of its instances, as the broker counts them at the scrape (the same in every instance).", labels, nil),
		unacked: prometheus.NewDesc("pubsub_unacknowledged_messages",
			"Messages of the subscription delivered and not yet acknowledged (being handled, or waiting to be delivered again), as the broker counts them at the scrape (the same in every instance).", labels, nil),
		timeout: backlogTimeout,
		subs:    make(map[[2]string][]backlogged),
		late:    make(map[[2]string]*backlogAsk),
	}
}

// Describe implements prometheus.Collector.
func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.unacked
}

// backlogAsk is one scrape's question to a subscription's Consumer.
type backlogAsk struct {
	key              [2]string
	pending, unacked int64
	err              error
	answered         bool // under backlogCollector.mu
}

// Collect implements prometheus.Collector: it asks the broker for every
// subscription's backlog at once, and reports those answered within
// backlogTimeout. It returns at that timeout even if a Consumer's Backlog
// does not heed its context (the admin /metrics handler has no timeout of
// its own): a late answer is dropped, and its subscription is not asked
// again until it answered, so that a broker that hangs holds one goroutine
// per subscription, not one per scrape. Scrapes at the same time (two
// Prometheus servers) each ask.
func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	asks := make(map[*backlogAsk]backlogged, len(c.subs))
	for key, list := range c.subs {
		if c.late[key] == nil {
			asks[&backlogAsk{key: key}] = list[0]
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	answers := make(chan *backlogAsk, len(asks)) // a late answer does not block
	for a, b := range asks {
		go func() {
			a.pending, a.unacked, a.err = b.Backlog(ctx)
			c.mu.Lock()
			a.answered = true
			if c.late[a.key] == a {
				delete(c.late, a.key)
			}
			c.mu.Unlock()
			answers <- a
		}()
	}
	for range asks {
		select {
		case a := <-answers:
			if a.err != nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(a.pending), a.key[0], a.key[1])
			ch <- prometheus.MustNewConstMetric(c.unacked, prometheus.GaugeValue, float64(a.unacked), a.key[0], a.key[1])
		case <-ctx.Done():
			c.mu.Lock()
			for a := range asks {
				if !a.answered {
					c.late[a.key] = a
				}
			}
			c.mu.Unlock()
			return
		}
	}
}

// add makes b report the backlog of subscription on topic until remove.
func (c *backlogCollector) add(topic, subscription string, b backlogged) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{topic, subscription}
	c.subs[key] = append(c.subs[key], b)
}

func (c *backlogCollector) remove(topic, subscription string, b backlogged) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{topic, subscription}
	list := slices.DeleteFunc(c.subs[key], func(x backlogged) bool { return x == b })
	if len(list) == 0 {
		delete(c.subs, key)
		return
	}
	c.subs[key] = list
}
