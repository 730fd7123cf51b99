package pubsubbench

import (
	"sync/atomic"
	"testing"
	"time"
)

// Countdown counts the messages a throughput benchmark handled: first a
// warm-up of a tenth of b.N, untimed, so that every run is measured in the
// same steady state whatever ran before it in the process, then b.N.
type Countdown struct {
	warm, total int64
	handled     atomic.Int64
	warmed      chan struct{}
	done        chan struct{}
}

// NewCountdown returns a Countdown for a benchmark of n messages.
func NewCountdown(n int) *Countdown {
	warm := int64(n / 10)
	c := &Countdown{warm: warm, total: warm + int64(n), warmed: make(chan struct{}), done: make(chan struct{})}
	if warm == 0 {
		close(c.warmed)
	}
	return c
}

// WarmUp is the number of messages to publish before the timed ones.
func (c *Countdown) WarmUp() int { return int(c.warm) }

// Handled counts one handled message; call it once per message.
func (c *Countdown) Handled() {
	switch c.handled.Add(1) {
	case c.warm:
		close(c.warmed)
	case c.total:
		close(c.done)
	}
}

// WaitWarm waits until the warm-up's messages were handled.
func (c *Countdown) WaitWarm(b *testing.B) { c.wait(b, c.warmed) }

// Wait waits until every message was handled.
func (c *Countdown) Wait(b *testing.B) { c.wait(b, c.done) }

func (c *Countdown) wait(b *testing.B, ch chan struct{}) {
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		b.Fatalf("handled %d of %d messages (%d of them the warm-up)", c.handled.Load(), c.total, c.warm)
	}
}
