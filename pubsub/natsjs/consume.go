package natsjs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subscribe implements [pubsub.Broker]: it creates or updates the durable pull
// consumer named after the subscription on the topic's stream, and consumes it
// with up to cfg.Prefetch messages buffered. If the consumer or the stream is
// deleted while it runs (by an operator, say), or lost (a server restarted
// without its storage), it creates them again and goes on: the new consumer
// starts from the messages the stream retains, and the verdicts of messages
// delivered before are dropped (a stream created again gives their sequence
// numbers to other messages); after a reconnect it looks the consumer up, to
// find one that another instance created again, and consumes on a new inbox.
// Before the broker's connection is first made (see [Config.NoConnectRetry]) it
// waits for it, until ctx is done: a [pubsub.Subscriber] started meanwhile
// consumes as soon as it is, its Check failing until then.
//
// With cfg.Replay, the consumer is the caller's own, named after the
// subscription with "_replay_" and a random suffix: it begins with the
// oldest message the stream retains (or the first stored at
// cfg.ReplaySince or later), is kept in memory, acknowledges every re-drive
// without delivering it, and is deleted by Close, or by the server once
// nothing pulled from it for Config.ReplayInactiveThreshold (the process
// is gone). One deleted or lost while it runs is made again from the first
// message it delivered without a verdict, or the one after the last it
// delivered (from the start again if the stream was created again
// meanwhile).
//
// The consumer reads the whole stream: the topic's subject and the re-drive
// subjects of every subscription, and it acknowledges the re-drives of
// other subscriptions without delivering them. Filtering on the topic's
// subject and its own re-drive subject instead costs the server a search of
// the stream's subject index for every message it delivers (getNextMsg:
// ~2.2 µs per message against ~1.6 µs unfiltered, BENCHMARKS.md section 3),
// for re-drives, which are rare.
func (b *Broker) Subscribe(ctx context.Context, cfg pubsub.ConsumerConfig, deliver func(pubsub.Delivery)) (pubsub.Consumer, error) {
	if err := b.errIfClosed(); err != nil {
		return nil, err
	}
	if err := b.awaitConnected(ctx); err != nil {
		return nil, err
	}
	c := &consumer{
		b:       b,
		cfg:     cfg,
		name:    cfg.Subscription,
		deliver: deliver,
		logger:  b.logger.With("topic", cfg.Topic, "subscription", cfg.Subscription),
	}
	if cfg.Replay {
		// The instance's own: the subscription's name, for operators who
		// list the consumers, and a random part.
		c.name = cfg.Subscription + "_replay_" + rand.Text()[:16]
		c.pos = &replayPosition{}
	}
	c.stopCtx, c.cancelStop = context.WithCancel(context.Background())
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	b.consumers.Store(c, struct{}{}) // checked again after a reconnect
	return c, nil
}

// consumer is one running consumption of a subscription.
type consumer struct {
	b       *Broker
	cfg     pubsub.ConsumerConfig
	name    string // the JetStream consumer's: the subscription, or a replay's own
	deliver func(pubsub.Delivery)
	logger  *slog.Logger
	// upTo is a replay's backlog: the stream's last sequence when its
	// consumer was made (see CaughtUp).
	upTo atomic.Uint64
	pos  *replayPosition // a replay's; nil for a durable subscription

	mu      sync.Mutex
	cc      jetstream.ConsumeContext
	stopped bool // Drain or Close was called
	// stopCtx is done once stopped is set: it ends heal's tries and waits.
	stopCtx    context.Context
	cancelStop context.CancelFunc
	healing    bool  // recreating a deleted consumer
	healErr    error // why it is healing, then why the last try failed
	// created is when the server created the consumer that cc reads: one
	// created anew since, by another instance that got there first after
	// the server lost its state, is told apart by it (see checkExists).
	created time.Time
	// cons is the consumer that cc reads, created at generation consGen;
	// replace consumes it again.
	cons    jetstream.Consumer
	consGen uint64
	// retired are the consumptions that replace retired, draining.
	retired []jetstream.ConsumeContext

	checking atomic.Bool // checkExists runs
	// gen counts the times the consumer was created again. A verdict of a
	// delivery of an earlier one is dropped (errStaleDelivery): JetStream
	// applies an acknowledgement to whatever the consumer of that name
	// holds at its stream sequence, and a stream created again gives those
	// sequences to other messages, which an old acknowledgement would lose.
	gen atomic.Uint64
}

// errStaleDelivery is the error of a verdict on a message delivered before
// its consumer was created again (see consumer.gen): the message comes
// again from the new consumer.
var errStaleDelivery = errors.New("natsjs: the consumer was created again since this message was delivered; verdict dropped")

func (c *consumer) start(ctx context.Context) error {
	if err := c.b.ensureStream(ctx, c.cfg.Topic, false); err != nil {
		return err
	}
	stream := streamName(c.cfg.Topic)
	conf := jetstream.ConsumerConfig{
		Durable:     c.cfg.Subscription,
		Description: "pubsub subscription " + c.cfg.Subscription + " of " + c.cfg.Topic,
		// The whole stream, said rather than left empty: nats-server 2.15
		// does not signal new messages to a consumer updated from filters to
		// none (swapSigSubs), as one made by an earlier natsjs would be.
		FilterSubject: ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    -1, // pubsub dead-letters after its own MaxAttempts
		MaxAckPending: c.b.cfg.MaxAckPending,
	}
	if c.cfg.Replay {
		if err := c.replayConfig(ctx, stream, &conf); err != nil {
			return err
		}
	}
	cons, err := c.b.js.CreateOrUpdateConsumer(ctx, stream, conf)
	if err != nil {
		if ferr := c.foreignConsumer(ctx, stream, conf, err); ferr != nil {
			return ferr
		}
		return fmt.Errorf("natsjs: failed to create or update consumer %s of stream %s: %w", c.name, stream, err)
	}
	gen, created := c.gen.Load(), cons.CachedInfo().Created
	cc, err := c.consume(cons, gen)
	if err != nil {
		return fmt.Errorf("natsjs: failed to consume %s of stream %s: %w", c.name, stream, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		cc.Stop()
		return nil
	}
	c.cc, c.created, c.cons, c.consGen = cc, created, cons, gen
	return nil
}

// consume consumes cons, created at generation gen, on a new inbox.
func (c *consumer) consume(cons jetstream.Consumer, gen uint64) (jetstream.ConsumeContext, error) {
	return cons.Consume(func(m jetstream.Msg) {
		if sub := redriveOf(m.Subject()); sub != "" && (c.cfg.Replay || sub != c.cfg.Subscription) {
			_ = m.Ack() // a re-drive for another subscription (a replay has none)
			if c.pos != nil {
				if md, ok := parseAckMetadata(m.Reply()); ok {
					c.pos.delivered(md.streamSeq, false)
				}
			}
			return
		}
		d := newDelivery(m)
		d.gen, d.cgen = gen, &c.gen
		if c.pos != nil {
			d.pos = c.pos
			c.pos.delivered(d.seq, true)
		}
		c.deliver(d)
	},
		jetstream.PullMaxMessages(max(c.cfg.Prefetch, 1)),
		jetstream.PullExpiry(c.b.cfg.PullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat(c.b.cfg.PullExpiry)),
		jetstream.ConsumeErrHandler(c.onError),
	)
}

// pullHeartbeat is how often the server is asked to send a heartbeat while
// a pull request of the given expiry waits: every second, or every half
// expiry if that is shorter (nats.go wants at most half, and at least
// 500ms). nats.go pulls again once two heartbeats go missing, and that is
// the only way out of a race in its Consume (nats-io/nats.go#1622: it
// believes it has a pull request outstanding when the server holds none;
// BENCHMARKS.md section 3): with nats.go's default heartbeat, half the
// expiry, the race holds waiting messages back for the whole expiry; with
// this, for 2s at most. pullAgain drops the old inbox, whose requests may
// still wait on the server if the heartbeats were only late.
func pullHeartbeat(expiry time.Duration) time.Duration {
	return min(time.Second, expiry/2)
}

func (c *consumer) onError(cc jetstream.ConsumeContext, err error) {
	if c.b.acks.isClosing() {
		// The broker's Close drains and closes the connection under a
		// consumption still running ("nats: connection closed"), and
		// nothing will pull, heal or reconnect any more: a warning
		// would say otherwise.
		c.logger.Debug("natsjs: consumer error while closing", "error", err)
		return
	}
	if errors.Is(err, jetstream.ErrNoHeartbeat) {
		go c.pullAgain(cc)
		return
	}
	if errors.Is(err, nats.ErrNoResponders) {
		// No server holds the consumer: it was lost with the server's state
		// (a server restarted on an empty disk), or a cluster is electing
		// its leader, which recreating it would not hasten. Ask.
		c.logger.Warn("natsjs: no server answers the pull requests; checking that the consumer exists", "error", err)
		if c.checking.CompareAndSwap(false, true) {
			go c.checkExists()
		}
		return
	}
	if !consumerGone(err) {
		c.logger.Warn("natsjs: consumer error", "error", err)
		return
	}
	c.beginHeal(err, time.Time{})
}

// pullAgain replaces old, a consumption that missed two heartbeats, with a
// new one on a new inbox, and drains old. nats.go's Consume pulls again
// itself, but on the same inbox and forgetting the pull requests it made:
// when the heartbeats were only late (a busy machine, a stalled network),
// those still wait on the server, and nats.go renews each one as it
// expires, so every such stall added a pull request for good, each
// heartbeated every second and asking for up to Prefetch messages, until
// MaxWaiting (512). The server drops the pull requests of an inbox nobody
// subscribes to any more; the messages that reached old are handled as it
// drains.
func (c *consumer) pullAgain(old jetstream.ConsumeContext) {
	c.replace(old, slog.LevelWarn, "natsjs: no heartbeat from the server for two intervals; pulling again",
		"heartbeat", pullHeartbeat(c.b.cfg.PullExpiry))
}

// reconnected consumes again on a new inbox after a reconnect, for the
// reason pullAgain does: nats.go's Consume pulls again on the same inbox,
// which it subscribes again on the new connection, and the pull requests
// made before still wait on the server while it sees interest on that
// inbox: through the old connection, dropped by the network but not yet
// found dead by the server (which takes minutes), or through the new one
// (a server that closed the old connection keeps its pull requests until
// it next checks their interest, by when the new one subscribes; in a
// cluster, a consumer leader on another node sees the new subscription
// through its routes). Their expiries then reach the new connection and
// nats.go renews them: every reconnect added a pull request for good.
func (c *consumer) reconnected() {
	c.mu.Lock()
	old := c.cc
	c.mu.Unlock()
	c.replace(old, slog.LevelInfo, "natsjs: reconnected; pulling again on a new inbox")
}

// replace replaces old, the current consumption, with one on a new inbox,
// and drains old, logging msg and args at level.
func (c *consumer) replace(old jetstream.ConsumeContext, level slog.Level, msg string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.healing || c.cc == nil || c.cc != old {
		return // drained, being created again, or replaced already
	}
	if c.b.acks.isClosing() {
		// The broker's Close began after the reconnected handler, or the
		// missed heartbeats, that called here: a new pull on the
		// connection it drains would announce a consumption that ends
		// at once, or fail ("connection draining") with a warning.
		return
	}
	c.logger.Log(context.Background(), level, msg, args...)
	cc, err := c.consume(c.cons, c.consGen)
	if err != nil { // the connection is closed: old's pull stands
		c.logger.Warn("natsjs: failed to consume on a new inbox", "error", err)
		return
	}
	c.cc = cc
	old.Drain()
	c.retired = slices.DeleteFunc(c.retired, func(r jetstream.ConsumeContext) bool { return isClosed(r) })
	c.retired = append(c.retired, old)
}

func isClosed(cc jetstream.ConsumeContext) bool {
	select {
	case <-cc.Closed():
		return true
	default:
		return false
	}
}

// Err reports, while the consumer is being created again (the server lost
// it), why nothing is consumed: the subscriber's Check fails with it.
func (c *consumer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.healing && !c.stopped {
		return c.healErr
	}
	return nil
}

// Backlog reports the subscription's messages not yet delivered (to any
// instance) and those delivered and not yet acknowledged, from the
// server's consumer info: the subscriber exports them as gauges (see
// [pubsub.Consumer]).
func (c *consumer) Backlog(ctx context.Context) (pending, unacknowledged int64, err error) {
	c.mu.Lock()
	cons := c.cons
	c.mu.Unlock()
	if cons == nil {
		return 0, 0, errors.New("natsjs: not consuming")
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return int64(info.NumPending), int64(info.NumAckPending), nil
}

// Drain implements [pubsub.Consumer]: the messages buffered when it is called
// are passed to deliver before it returns. While the connection is down, it
// stops at once instead: draining waits for the server to confirm, which
// would hold the shutdown for the whole of ctx, and the messages fetched
// come again after AckWait anyway, their verdicts having nowhere to go.
func (c *consumer) Drain(ctx context.Context) error {
	all := c.markStopped()
	if err := c.b.down(); err != nil {
		for _, cc := range all {
			cc.Stop()
		}
		return err
	}
	for _, cc := range all {
		cc.Drain()
	}
	for _, cc := range all {
		select {
		case <-cc.Closed():
		case <-ctx.Done():
			for _, cc := range all {
				cc.Stop()
			}
			return ctx.Err()
		}
	}
	return nil
}

// markStopped stops heal and any consumer it would make, and returns the
// consumptions: the current one, then those that replace retired.
func (c *consumer) markStopped() []jetstream.ConsumeContext {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.cancelStop()
	return append([]jetstream.ConsumeContext{c.cc}, c.retired...)
}

// Close implements [pubsub.Consumer]: it flushes the connection, so that
// every verdict sent reached the server, and deletes a replay's consumer
// (one it cannot delete, the server does after
// Config.ReplayInactiveThreshold).
func (c *consumer) Close(ctx context.Context) error {
	all := c.markStopped()
	c.b.consumers.Delete(c)
	for _, cc := range all {
		cc.Stop()
	}
	if c.b.nc.IsClosed() {
		return pubsub.ErrClosed
	}
	if err := c.b.down(); err != nil {
		return err // no flush can succeed before the connection is back
	}
	if err := c.b.nc.FlushWithContext(ctx); err != nil || !c.cfg.Replay {
		return err
	}
	err := c.b.js.DeleteConsumer(ctx, streamName(c.cfg.Topic), c.name)
	if err != nil && !consumerGone(err) {
		return fmt.Errorf("natsjs: failed to delete the replay's consumer %s (the server does after %v): %w", c.name, c.b.cfg.ReplayInactiveThreshold, err)
	}
	return nil
}
