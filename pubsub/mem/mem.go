// Package mem is an in-memory [pubsub.Broker] with the delivery semantics of
// package natsjs. It has durable subscriptions shared by their instances,
// at-least-once delivery with acknowledgement, redelivery after a delay or
// after an ack wait, deduplication by message id, dead letters with re-drive.
// Use it in tests and in single-process programs that can lose their messages
// when the process stops: nothing is written to disk.
//
// A topic retains a message until every durable subscription that exists
// has acknowledged it (messages published while a topic has no subscription
// are kept for the first one), and at most [WithMaxRetained] messages (the
// oldest are dropped first). Once a replaying subscription
// ([pubsub.WithReplay]) was made on a topic, the topic keeps acknowledged
// messages too, up to WithMaxRetained, for the replays to come, as a
// JetStream stream keeps them up to its age limit; those dropped before
// are not replayed.
//
// Create one with [New] and hand it to pubsub.NewPublisher and
// pubsub.NewSubscriber; close it when they have stopped. New's example is
// the body of a unit test of an application's subscriber, in which
// pubsubtest.Start and pubsubtest.WaitFor do the waiting. Drivers share
// pubsubtest's conformance suite, so a test on mem holds on natsjs too (see
// the README's section "Testing", under Events).
package mem

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/connectkit/connectkit/pubsub"
)

// Defaults of [WithDuplicateWindow] and [WithMaxRetained].
const (
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMaxRetained     = 1 << 20
)

// Option configures a [Broker].
type Option interface {
	apply(*Broker)
}

type optionFunc func(*Broker)

func (f optionFunc) apply(b *Broker) { f(b) }

// WithDuplicateWindow sets how long a message id is remembered to drop
// duplicates. Default 2 minutes, as JetStream; 0 or less turns
// deduplication off.
func WithDuplicateWindow(d time.Duration) Option {
	return optionFunc(func(b *Broker) { b.dupWindow = d })
}

// WithMaxRetained sets how many messages a topic retains at most. Default
// 1<<20, also for 0 or less.
func WithMaxRetained(n int) Option {
	return optionFunc(func(b *Broker) { b.maxRetained = n })
}

// Broker is an in-memory message broker. It is safe for concurrent use.
type Broker struct {
	dupWindow   time.Duration
	maxRetained int

	mu      sync.Mutex
	closed  bool
	topics  map[string]*topic
	dead    []*pubsub.DeadLetter // ordered by Ref
	deadSeq uint64
}

var _ pubsub.Broker = (*Broker)(nil)

// New returns an empty broker.
func New(opts ...Option) *Broker {
	b := &Broker{
		dupWindow:   DefaultDuplicateWindow,
		maxRetained: DefaultMaxRetained,
		topics:      make(map[string]*topic),
	}
	for _, o := range opts {
		o.apply(b)
	}
	if b.maxRetained <= 0 {
		b.maxRetained = DefaultMaxRetained
	}
	return b
}

// System implements [pubsub.Broker]: "mem".
func (b *Broker) System() string { return "mem" }

// Close stops every consumer; the broker then refuses every operation with
// [pubsub.ErrClosed]. Close is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, t := range b.topics {
		for _, g := range t.groups {
			for c := range g.consumers {
				c.stopLocked()
			}
		}
		for g := range t.replays {
			for c := range g.consumers {
				c.stopLocked()
			}
		}
	}
	return nil
}

// Check implements [pubsub.Broker]: it fails once the broker is closed.
func (b *Broker) Check(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return pubsub.ErrClosed
	}
	return nil
}

type confirmed struct{}

func (confirmed) Wait(context.Context) error { return nil }

// Publish implements [pubsub.Broker]. The message is stored when Publish
// returns; a message to deduplicate whose id was published within the
// duplicate window is dropped (and confirmed).
func (b *Broker) Publish(ctx context.Context, msg *pubsub.Message) (pubsub.Confirmation, error) {
	if err := ctx.Err(); err != nil {
		return nil, notSent(err)
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, notSent(pubsub.ErrClosed)
	}
	// Only a re-drive carries it (see pubsub.HeaderOriginalTime).
	delete(msg.Header, pubsub.HeaderOriginalTime)
	t := b.topic(msg.Topic)
	if msg.Deduplicate && msg.ID != "" && b.dupWindow > 0 {
		if t.isDuplicate(msg.ID, now, b.dupWindow) {
			return confirmed{}, nil
		}
	}
	t.append(msg, "", now, b.maxRetained)
	return confirmed{}, nil
}

// notSent wraps err, the error of a publish refused before its message was
// stored, with [pubsub.ErrNotSent], as natsjs words it.
func notSent(err error) error {
	return fmt.Errorf("pubsub: message %w: %w", pubsub.ErrNotSent, err)
}

func (b *Broker) topic(name string) *topic {
	t := b.topics[name]
	if t == nil {
		t = &topic{broker: b, name: name, next: 1, first: 1, groups: make(map[string]*group), replays: make(map[*group]struct{}), dedup: make(map[string]time.Time)}
		b.topics[name] = t
	}
	return t
}

// DeadLetter implements [pubsub.Broker].
func (b *Broker) DeadLetter(_ context.Context, dl *pubsub.DeadLetter) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return pubsub.ErrClosed
	}
	b.deadSeq++
	stored := *dl
	stored.Ref = strconv.FormatUint(b.deadSeq, 10)
	stored.Message.Header = dl.Message.Header.Clone()
	b.dead = append(b.dead, &stored)
	return nil
}

// DeadLetters implements [pubsub.Broker].
func (b *Broker) DeadLetters(ctx context.Context, topic, subscription string) iter.Seq2[*pubsub.DeadLetter, error] {
	return b.DeadLettersAfter(ctx, topic, subscription, "")
}

// DeadLettersAfter implements [pubsub.DeadLetterPager]: refs are decimal
// numbers, growing. It copies the dead letters a chunk at a time, as they
// are listed, so that a page costs what it lists and not the backlog after
// it; those stored during the listing are left for the next one, as natsjs
// does.
func (b *Broker) DeadLettersAfter(_ context.Context, topic, subscription, after string) iter.Seq2[*pubsub.DeadLetter, error] {
	return func(yield func(*pubsub.DeadLetter, error) bool) {
		from, err := refAfter(after)
		if err != nil {
			yield(nil, err)
			return
		}
		b.mu.Lock()
		last, closed := b.deadSeq, b.closed
		b.mu.Unlock()
		if closed {
			yield(nil, pubsub.ErrClosed)
			return
		}
		for from < last {
			var chunk []*pubsub.DeadLetter
			if chunk, from, err = b.deadChunk(topic, subscription, from, last); err != nil {
				yield(nil, err)
				return
			}
			for _, dl := range chunk {
				if !yield(dl, nil) {
					return
				}
			}
		}
	}
}

// deadChunkSize is the number of dead letters that DeadLettersAfter copies
// at a time.
const deadChunkSize = 64

// deadChunk returns copies of up to deadChunkSize dead letters of topic and
// subscription ("" for any) whose refs are above from and at most last,
// and the ref that the next chunk begins after (last when none is left).
func (b *Broker) deadChunk(topic, subscription string, from, last uint64) ([]*pubsub.DeadLetter, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, last, pubsub.ErrClosed
	}
	// b.dead is in the order of its refs: a deletion keeps the order.
	i, _ := slices.BinarySearchFunc(b.dead, from+1, func(dl *pubsub.DeadLetter, seq uint64) int {
		return cmp.Compare(deadSeq(dl), seq)
	})
	var out []*pubsub.DeadLetter
	for ; i < len(b.dead) && len(out) < deadChunkSize; i++ {
		dl := b.dead[i]
		if from = deadSeq(dl); from > last {
			return out, last, nil
		}
		if (topic == "" || dl.Message.Topic == topic) && (subscription == "" || dl.Subscription == subscription) {
			c := *dl
			c.Message.Header = dl.Message.Header.Clone()
			out = append(out, &c)
		}
	}
	if i == len(b.dead) {
		from = last
	}
	return out, from, nil
}

// deadSeq is the number of a stored dead letter's ref.
func deadSeq(dl *pubsub.DeadLetter) uint64 {
	seq, _ := strconv.ParseUint(dl.Ref, 10, 64)
	return seq
}

// refAfter parses the ref a listing begins after: 0 for "".
func refAfter(after string) (uint64, error) {
	if after == "" {
		return 0, nil
	}
	seq, err := strconv.ParseUint(after, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: mem's refs are numbers, not %q", pubsub.ErrBadRef, after)
	}
	return seq, nil
}

// Redrive implements [pubsub.Broker].
func (b *Broker) Redrive(_ context.Context, dl *pubsub.DeadLetter) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	stored, err := b.takeDead(dl)
	if err != nil {
		return err
	}
	msg := stored.Message
	b.topic(msg.Topic).append(&msg, stored.Subscription, time.Now(), b.maxRetained)
	return nil
}

// DeleteDeadLetter implements [pubsub.Broker].
func (b *Broker) DeleteDeadLetter(_ context.Context, dl *pubsub.DeadLetter) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.takeDead(dl)
	return err
}

// takeDead removes the dead letter with dl's Ref and returns it; b.mu must be
// held.
func (b *Broker) takeDead(dl *pubsub.DeadLetter) (*pubsub.DeadLetter, error) {
	if b.closed {
		return nil, pubsub.ErrClosed
	}
	i := slices.IndexFunc(b.dead, func(d *pubsub.DeadLetter) bool { return d.Ref == dl.Ref })
	if i < 0 {
		return nil, fmt.Errorf("%w: ref %q", errNoDeadLetter, dl.Ref)
	}
	stored := b.dead[i]
	b.dead = slices.Delete(b.dead, i, i+1)
	return stored, nil
}

var errNoDeadLetter = errors.New("mem: no such dead letter")
