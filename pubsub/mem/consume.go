package mem

import (
	"context"
	"time"

	"github.com/connectkit/connectkit/pubsub"
)

// Subscribe implements [pubsub.Broker]: it creates the subscription on first
// use (it then receives the messages the topic retains) and starts a
// consumer that competes for the subscription's messages with the others.
// With cfg.Replay, the consumer has a subscription of its own, which begins
// with the oldest message retained (stored at cfg.ReplaySince or later) and
// is removed when the consumer is drained or closed.
func (b *Broker) Subscribe(ctx context.Context, cfg pubsub.ConsumerConfig, deliver func(pubsub.Delivery)) (pubsub.Consumer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, pubsub.ErrClosed
	}
	t := b.topic(cfg.Topic)
	g := t.groups[cfg.Subscription]
	switch {
	case cfg.Replay:
		g = newReplay(t, cfg.Subscription, cfg.ReplaySince)
	case g == nil:
		g = newGroup(t, cfg.Subscription)
	}
	g.ackWait = cfg.AckWait
	if g.ackWait <= 0 {
		g.ackWait = pubsub.DefaultAckWait
	}
	c := &consumer{b: b, g: g, deliver: deliver, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	g.consumers[c] = struct{}{}
	go c.loop()
	return c, nil
}

// consumer is one running consumption of a group: a goroutine that takes the
// group's next message and passes it to deliver.
type consumer struct {
	b       *Broker
	g       *group
	deliver func(pubsub.Delivery)
	wake    chan struct{}
	stop    chan struct{} // closed under b.mu by stopLocked
	stopped bool
	done    chan struct{}
}

func (c *consumer) loop() {
	defer close(c.done)
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		c.b.mu.Lock()
		if c.stopped {
			c.b.mu.Unlock()
			return
		}
		d, wait := c.g.next(time.Now())
		c.b.mu.Unlock()
		if d != nil {
			c.deliver(d)
			continue
		}
		var due <-chan time.Time
		if wait > 0 {
			if t == nil {
				t = time.NewTimer(wait)
			} else {
				t.Reset(wait)
			}
			due = t.C
		}
		select {
		case <-c.wake:
		case <-due:
		case <-c.stop:
			return
		}
	}
}

// stopLocked stops the consumer; b.mu must be held.
func (c *consumer) stopLocked() {
	if c.stopped {
		return
	}
	c.stopped = true
	close(c.stop)
	delete(c.g.consumers, c)
	if c.g.replay {
		delete(c.g.t.replays, c.g)
	}
}

// Drain implements [pubsub.Consumer]: the consumer has no prefetch buffer,
// so it stops once the delivery in progress, if any, was passed on.
func (c *consumer) Drain(ctx context.Context) error {
	c.b.mu.Lock()
	c.stopLocked()
	c.b.mu.Unlock()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Backlog reports the group's messages not yet delivered and those
// delivered and not yet acknowledged (see [pubsub.Consumer]).
func (c *consumer) Backlog(ctx context.Context) (pending, unacknowledged int64, err error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	// The retention limit may have dropped messages the group never got,
	// leaving its cursor behind the first retained one.
	for seq := max(c.g.cursor, c.g.t.first); seq < c.g.t.next; seq++ {
		if c.g.wants(c.g.t.entry(seq)) {
			pending++
		}
	}
	return pending, int64(len(c.g.states)), nil
}

// CaughtUp implements [pubsub.Replayer]: whether the messages of the topic
// up to the last one at the consumer's start that it was to receive are
// all delivered and acknowledged or terminated (or dropped by the
// retention limit). A consumer of a durable subscription is always caught
// up.
func (c *consumer) CaughtUp(context.Context) (bool, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	g := c.g
	if !g.replay {
		return true, nil
	}
	for seq := max(g.cursor, g.t.first); seq <= g.upTo; seq++ {
		if g.wants(g.t.entry(seq)) {
			return false, nil
		}
	}
	for seq := range g.states {
		if seq <= g.upTo && g.t.entry(seq) != nil {
			return false, nil
		}
	}
	return true, nil
}

// Close implements [pubsub.Consumer]; verdicts take effect at once, so
// there is nothing to flush.
func (c *consumer) Close(ctx context.Context) error {
	return c.Drain(ctx)
}

// delivery is one delivery of a message to a group.
type delivery struct {
	g       *group
	seq     uint64
	gen     uint64
	attempt int
	msg     *pubsub.Message
	at      time.Time // when the topic took the message (see Timestamp)
}

func (d *delivery) Message() *pubsub.Message { return d.msg }
func (d *delivery) Attempt() int             { return d.attempt }

// Sequence is the message's position in its topic (see [pubsub.Delivery]).
func (d *delivery) Sequence() uint64 { return d.seq }

// Timestamp is when the topic took the message: its publish, or its
// re-drive (see [pubsub.Delivery]).
func (d *delivery) Timestamp() time.Time { return d.at }

func (d *delivery) Ack() error {
	return d.locked(func() { d.g.settle(d.seq) })
}

func (d *delivery) Nak(delay time.Duration) error {
	due := time.Now().Add(delay)
	return d.locked(func() { d.g.reschedule(d.seq, d.gen, due) })
}

func (d *delivery) Term(string) error { return d.Ack() }

// InProgress restarts the message's AckWait (see [pubsub.Delivery]).
func (d *delivery) InProgress() error {
	return d.locked(func() { d.g.extend(d.seq, d.gen, time.Now().Add(d.g.ackWait)) })
}

// locked calls f under the broker's lock, unless the broker is closed.
func (d *delivery) locked(f func()) error {
	b := d.g.t.broker
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return pubsub.ErrClosed
	}
	f()
	return nil
}
