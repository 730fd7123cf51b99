package interceptors

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/prometheus/client_golang/prometheus"
)

// outcomes are the values of the outcome label, by index.
var outcomes = [3]msgctx.Outcome{msgctx.Ack, msgctx.Retry, msgctx.DeadLetter}

func outcomeIndex(o msgctx.Outcome) int {
	switch o {
	case msgctx.Ack:
		return 0
	case msgctx.Retry:
		return 1
	default:
		return 2
	}
}

// pubsubMetrics are the series of message publishes and deliveries, which
// package pubsub presents to the chain as unary calls.
type pubsubMetrics struct {
	published, handled, panics *prometheus.CounterVec
	handling                   *prometheus.HistogramVec

	max  int
	mu   sync.Mutex
	keys atomic.Pointer[map[destination]*destMetrics]
	// The children looked up last, for publishes and for deliveries: most
	// calls are of the destination before, which then costs no hashing of
	// its strings and no map lookup (~150 instructions a call, callgrind,
	// BENCHMARKS.md section 3).
	lastPublished, lastHandled atomic.Pointer[destMetrics]
}

// destination is a topic, and for deliveries a subscription.
type destination struct{ topic, subscription string }

// destMetrics are the children of one destination.
type destMetrics struct {
	dest      destination
	handling  prometheus.Observer // deliveries only
	published [maxCode + 1]atomic.Pointer[prometheus.Counter]
	handled   [len(outcomes)]atomic.Pointer[prometheus.Counter]
	panics    atomic.Pointer[prometheus.Counter] // made on the first panic
}

func newPubsubMetrics(reg prometheus.Registerer, cfg *metricsConfig) (*pubsubMetrics, error) {
	var err error
	m := &pubsubMetrics{max: cfg.maxProcedures}
	m.published = registered(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pubsub_published_total",
		Help: "Total number of messages published, by topic and code.",
	}, []string{"topic", "code"}))
	m.handled = registered(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pubsub_handled_total",
		Help: "Total number of message deliveries handled, by outcome (ack, retry, dead_letter).",
	}, []string{"topic", "subscription", "outcome"}))
	m.panics = registered(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pubsub_panics_recovered_total",
		Help: "Total number of message handlers that panicked and were recovered, by topic and subscription.",
	}, []string{"topic", "subscription"}))
	m.handling = registered(reg, &err, prometheus.NewHistogramVec(cfg.histogramOpts("pubsub_handling_seconds",
		"Histogram of the time (seconds) taken to handle a message delivery."), []string{"topic", "subscription"}))
	if err != nil {
		return nil, err
	}
	m.keys.Store(&map[destination]*destMetrics{})
	return m, nil
}

// observe records one publish or delivery.
func (m *pubsubMetrics) observe(ctx context.Context, info *msgctx.Info, start time.Time, err error) {
	if info.Operation == msgctx.Publish {
		dm := m.lookup(destination{topic: info.Topic})
		code := codeOf(err)
		if c := dm.published[code].Load(); c != nil {
			(*c).Inc()
			return
		}
		lazyChild(&dm.published[code], m.published, dm.dest.topic, grpcCodeNames[code]).Inc()
		return
	}
	dm := m.lookup(destination{topic: info.Topic, subscription: info.Subscription})
	observeSince(ctx, dm.handling, start)
	if panicOf(err) != nil {
		lazyChild(&dm.panics, m.panics, dm.dest.topic, dm.dest.subscription).Inc()
	}
	i := outcomeIndex(info.Outcome(err))
	if c := dm.handled[i].Load(); c != nil {
		(*c).Inc()
		return
	}
	lazyChild(&dm.handled[i], m.handled, dm.dest.topic, dm.dest.subscription, string(outcomes[i])).Inc()
}

// lookup returns the children of d, or of "other" past the cap. The "other"
// entries are stored in the map too, beyond the cap.
func (m *pubsubMetrics) lookup(d destination) *destMetrics {
	last := &m.lastHandled
	if d.subscription == "" {
		last = &m.lastPublished
	}
	if dm := last.Load(); dm != nil && dm.dest == d {
		return dm
	}
	dm := m.lookupMap(d)
	last.Store(dm)
	return dm
}

// lookupMap is lookup without the last children.
func (m *pubsubMetrics) lookupMap(d destination) *destMetrics {
	keys := *m.keys.Load()
	if dm, ok := keys[d]; ok {
		return dm
	}
	if len(keys) >= m.max {
		if dm, ok := keys[d.overflow()]; ok {
			return dm
		}
	}
	return m.add(d)
}

func (d destination) overflow() destination {
	o := destination{topic: otherLabel}
	if d.subscription != "" {
		o.subscription = otherLabel
	}
	return o
}

func (m *pubsubMetrics) add(d destination) *destMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := *m.keys.Load()
	if dm, ok := keys[d]; ok {
		return dm
	}
	key := d
	if len(keys) >= m.max {
		key = d.overflow()
		if dm, ok := keys[key]; ok {
			return dm
		}
	}
	dm := &destMetrics{dest: key}
	if key.subscription != "" {
		dm.handling = m.handling.WithLabelValues(key.topic, key.subscription)
	}
	next := make(map[destination]*destMetrics, len(keys)+1)
	for k, v := range keys {
		next[k] = v
	}
	next[key] = dm
	m.keys.Store(&next)
	return dm
}
