package pubsub

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// DeliveryConfig tunes how a [Subscriber] handles its messages. Its zero
// value is valid: every zero field takes the default it documents.
type DeliveryConfig struct {
	// Concurrency is the most handlers running at once in one subscriber
	// instance. Default 16. With 1, one instance handles messages in order,
	// retries aside.
	Concurrency int
	// Prefetch is how many messages an instance fetches ahead of its
	// handlers. Default 4 × Concurrency. It does not bound the handlers: a
	// message leaves the buffer when a handler takes it, so a Prefetch
	// below Concurrency (1, say, for slow handlers whose messages should
	// not wait out AckWait in the buffer) still runs Concurrency handlers
	// at once, fetching fewer messages at a time. At shutdown, the handlers
	// still take the prefetched messages, within DrainTimeout; those that no
	// handler started by then are handed back, for immediate redelivery.
	Prefetch int
	// MaxAttempts is how many deliveries a message gets before a failing
	// message is dead-lettered with reason max_attempts. Default 5; a
	// negative value means no limit.
	MaxAttempts int
	// AckWait bounds one handling: the handler's context has this deadline,
	// and a delivery without a verdict after AckWait (the process crashed,
	// say) is delivered again. The broker counts it from the fetch; a
	// message that waited a tenth of it or more for a handler has the
	// broker restart it when its handler starts, and one that waited less
	// has what is left. A message that waits longer than AckWait among the
	// prefetched ones is delivered again (the copies that follow it into
	// the same instance are acknowledged without a handler once it was
	// handled): keep it above Prefetch/Concurrency × the longest handling.
	// Default 30s; at least 100ms.
	AckWait time.Duration
	// DrainTimeout bounds how long Run waits, once its context is done, for
	// the handlers in flight to finish. Default 10s.
	DrainTimeout time.Duration
	// Backoff is the delay before a failed message is delivered again.
	Backoff Backoff
}

// Backoff is an exponential backoff with jitter: the n-th failed attempt is
// retried after Initial × Multiplier^(n-1), at most Max, multiplied by a
// random factor in [1-Jitter, 1+Jitter]. Its zero value takes the defaults.
type Backoff struct {
	// Initial is the delay after the first failure. Default 1s.
	Initial time.Duration
	// Max caps the delay. Default 1m.
	Max time.Duration
	// Multiplier is the growth factor from one delay to the next. Default 2.
	Multiplier float64
	// Jitter spreads each delay by up to this fraction either way, so that
	// messages failing together are not retried together. Default 0.2; a
	// negative value disables it.
	Jitter float64
}

// Defaults of [DeliveryConfig] and [Backoff].
const (
	DefaultConcurrency       = 16
	DefaultMaxAttempts       = 5
	DefaultAckWait           = 30 * time.Second
	DefaultDrainTimeout      = 10 * time.Second
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = time.Minute
	DefaultBackoffMultiplier = 2
	DefaultBackoffJitter     = 0.2
)

// minAckWait is the shortest AckWait that Validate takes.
const minAckWait = 100 * time.Millisecond

// Validate reports the first field with an invalid value, by name.
func (c DeliveryConfig) Validate() error {
	switch {
	case c.Concurrency < 0:
		return fmt.Errorf("pubsub: DeliveryConfig.Concurrency = %d: must not be negative", c.Concurrency)
	case c.Prefetch < 0:
		return fmt.Errorf("pubsub: DeliveryConfig.Prefetch = %d: must not be negative", c.Prefetch)
	case c.AckWait < 0:
		return fmt.Errorf("pubsub: DeliveryConfig.AckWait = %v: must not be negative", c.AckWait)
	case c.AckWait > 0 && c.AckWait < minAckWait:
		// Shorter, every message comes again while its handler runs, and
		// its deadline leaves no handler the time to finish: a typo of
		// "30s", not a setting.
		return fmt.Errorf("pubsub: DeliveryConfig.AckWait = %v: must be at least %v (or 0 for the default, %v): shorter, the broker delivers each message again while its handler still runs", c.AckWait, minAckWait, DefaultAckWait)
	case c.DrainTimeout < 0:
		return fmt.Errorf("pubsub: DeliveryConfig.DrainTimeout = %v: must not be negative", c.DrainTimeout)
	}
	return c.Backoff.Validate()
}

// Validate reports the first field with an invalid value, by name.
func (b Backoff) Validate() error {
	switch {
	case b.Initial < 0:
		return fmt.Errorf("pubsub: Backoff.Initial = %v: must not be negative", b.Initial)
	case b.Max < 0:
		return fmt.Errorf("pubsub: Backoff.Max = %v: must not be negative", b.Max)
	case b.Multiplier != 0 && (b.Multiplier < 1 || math.IsNaN(b.Multiplier) || math.IsInf(b.Multiplier, 0)):
		return fmt.Errorf("pubsub: Backoff.Multiplier = %v: must be at least 1", b.Multiplier)
	case b.Jitter > 1 || math.IsNaN(b.Jitter):
		return fmt.Errorf("pubsub: Backoff.Jitter = %v: must be at most 1", b.Jitter)
	}
	d := b.withDefaults()
	if d.Max < d.Initial {
		return fmt.Errorf("pubsub: Backoff.Max = %v is less than Backoff.Initial = %v", d.Max, d.Initial)
	}
	return nil
}

func (c DeliveryConfig) withDefaults() DeliveryConfig {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Prefetch == 0 {
		c.Prefetch = 4 * c.Concurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxAttempts < 0 {
		c.MaxAttempts = 0 // msgctx: 0 means unlimited
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	c.Backoff = c.Backoff.withDefaults()
	return c
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max == 0 {
		b.Max = max(DefaultBackoffMax, b.Initial)
	}
	if b.Multiplier == 0 {
		b.Multiplier = DefaultBackoffMultiplier
	}
	if b.Jitter == 0 {
		b.Jitter = DefaultBackoffJitter
	}
	// A negative Jitter stays negative (no jitter): turned into 0 it would
	// take the default again when the defaults are applied twice, as by
	// NewSubscriber and then Delay.
	return b
}

// Delay returns the delay before retrying after the given failed attempt
// (from 1), with b's defaults applied and a random jitter.
func (b Backoff) Delay(attempt int) time.Duration {
	// Written by hand: a backoff library (cenkalti/backoff) brings its own
	// retry loop and timers, while here the broker schedules the
	// redelivery and only the delay is needed.
	b = b.withDefaults()
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(max(attempt, 1)-1))
	d = min(d, float64(b.Max))
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	return time.Duration(min(d, float64(b.Max)))
}
