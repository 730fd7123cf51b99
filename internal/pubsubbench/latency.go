package pubsubbench

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Paced calls send n times at rate calls per second, with the time of each
// call in Unix nanoseconds.
func Paced(n, rate int, send func(sentAt int64)) {
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for range n {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		send(time.Now().UnixNano())
	}
}

// Latencies collects end-to-end latencies of a benchmark.
type Latencies struct {
	mu   sync.Mutex
	d    []time.Duration
	n    int
	done chan struct{}
}

// NewLatencies returns a collector of n latencies.
func NewLatencies(n int) *Latencies {
	return &Latencies{d: make([]time.Duration, 0, n), n: n, done: make(chan struct{})}
}

// Observe records the latency of a message sent at sentAt (Unix
// nanoseconds).
func (l *Latencies) Observe(sentAt int64) {
	d := time.Duration(time.Now().UnixNano() - sentAt)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d = append(l.d, d)
	if len(l.d) == l.n {
		close(l.done)
	}
}

// Wait waits until every latency was observed.
func (l *Latencies) Wait(b *testing.B) {
	select {
	case <-l.done:
	case <-time.After(waitTimeout):
		l.mu.Lock()
		defer l.mu.Unlock()
		b.Fatalf("received %d of %d messages", len(l.d), l.n)
	}
}

// Report reports the median and 99th percentile, in µs.
func (l *Latencies) Report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	at := func(q float64) float64 { return float64(l.d[int(q*float64(len(l.d)-1))]) / float64(time.Microsecond) }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
