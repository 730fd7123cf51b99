package natsjs

// Creating a consumer again when the server lost it or an operator
// deleted it (the healing that [Broker.Subscribe]'s doc describes).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats.go/jetstream"
)

// beginHeal stops consuming and creates the consumer again, unless it was
// drained or is being created again already, or, with known set, reads a
// consumer created at another time than known by now, or Close began.
func (c *consumer) beginHeal(err error, known time.Time) {
	c.mu.Lock()
	if c.stopped || c.healing || (!known.IsZero() && !c.created.Equal(known)) {
		c.mu.Unlock()
		return
	}
	if c.b.acks.isClosing() { // nothing is made on the connection it drains
		c.mu.Unlock()
		c.logger.Debug("natsjs: consumer deleted or lost while closing", "error", err)
		return
	}
	c.healing = true
	c.healErr = fmt.Errorf("natsjs: consumer deleted or lost (%w); creating it again", err)
	c.gen.Add(1)
	old := c.cc
	c.mu.Unlock()
	if old != nil { // nil if the error came before Consume returned
		old.Stop()
	}
	c.logger.Error("natsjs: consumer deleted or lost; creating it again", "error", err)
	go c.heal()
}

// consumerGone reports whether err says that the consumer or its stream
// is no more.
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

// checkExists looks the consumer up, and heals it if it is gone, or if it
// was created anew since cc began to read it: after a server lost its
// state, the instance of a subscription that reconnects first makes the
// stream and the consumer again, and the others, finding them, get no
// error from nats.go, while their verdicts on messages delivered before
// would name sequences that the new stream gives to other messages.
func (c *consumer) checkExists() {
	defer c.checking.Store(false)
	c.mu.Lock()
	known := c.created
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := c.b.js.Consumer(ctx, streamName(c.cfg.Topic), c.name)
	switch {
	case consumerGone(err):
		c.onError(nil, err)
	case err == nil && !known.IsZero() && !cons.CachedInfo().Created.Equal(known):
		c.beginHeal(fmt.Errorf("created again at %s, since this one was at %s", cons.CachedInfo().Created, known), known)
	}
}

// healDelay is how long a stream or consumer found lost waits before it is
// created again (see streamLost).
const healDelay = time.Second

// heal creates the stream and the consumer again, retrying until it succeeds
// or the consumer is drained.
func (c *consumer) heal() {
	defer func() {
		c.mu.Lock()
		c.healing = false
		c.mu.Unlock()
	}()
	c.b.streamLost(c.cfg.Topic) // the stream may be gone too: not made again at once (see streamLost)
	// Nor the consumer, whose stream may have been made again a moment ago.
	select {
	case <-time.After(healDelay):
	case <-c.stopCtx.Done():
		return
	case <-c.b.closed:
		return
	}
	retry := pubsub.Backoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second}
	for attempt := 1; ; attempt++ {
		c.mu.Lock()
		stopped := c.stopped
		c.mu.Unlock()
		if stopped || c.b.acks.isClosing() {
			return // drained, or the broker's Close began (see beginHeal)
		}
		ctx, cancel := context.WithTimeout(c.stopCtx, 30*time.Second)
		err := c.start(ctx)
		cancel()
		if err == nil {
			c.logger.Info("natsjs: consumer created again")
			return
		}
		if c.stopCtx.Err() != nil || c.b.acks.isClosing() {
			return // drained or closed while trying: nothing failed
		}
		c.logger.Error("natsjs: failed to create the consumer again; retrying", "error", err)
		c.mu.Lock()
		c.healErr = fmt.Errorf("natsjs: consumer deleted or lost; creating it again failed: %w", err)
		c.mu.Unlock()
		select {
		case <-time.After(retry.Delay(attempt)):
		case <-c.stopCtx.Done():
			return
		case <-c.b.closed:
			return
		}
	}
}
