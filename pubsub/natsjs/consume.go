package natsjs

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats.go/jetstream"
)

// Subscribe implements [pubsub.Broker]: it creates or updates the durable
// pull consumer named after the subscription on the topic's stream, reading
// the topic's subject and the subscription's re-drive subject, and consumes
// it with up to cfg.Prefetch messages buffered.
func (b *Broker) Subscribe(ctx context.Context, cfg pubsub.ConsumerConfig, deliver func(pubsub.Delivery)) (pubsub.Consumer, error) {
	if err := b.ensureStream(ctx, cfg.Topic); err != nil {
		return nil, err
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, streamName(cfg.Topic), jetstream.ConsumerConfig{
		Durable:        cfg.Subscription,
		Description:    "pubsub subscription " + cfg.Subscription + " of " + cfg.Topic,
		FilterSubjects: []string{cfg.Topic, redriveSubject(cfg.Subscription, cfg.Topic)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     -1, // pubsub dead-letters after its own MaxAttempts
		MaxAckPending:  b.cfg.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("natsjs: failed to create or update consumer %s of stream %s: %w", cfg.Subscription, streamName(cfg.Topic), err)
	}
	logger := b.logger.With("topic", cfg.Topic, "subscription", cfg.Subscription)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		deliver(newDelivery(m))
	},
		jetstream.PullMaxMessages(max(cfg.Prefetch, 1)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			logger.Warn("natsjs: consumer error", "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("natsjs: failed to consume %s of stream %s: %w", cfg.Subscription, streamName(cfg.Topic), err)
	}
	return &consumer{b: b, cc: cc}, nil
}

type consumer struct {
	b  *Broker
	cc jetstream.ConsumeContext
}

// Drain implements [pubsub.Consumer]: the messages buffered when it is called
// are passed to deliver before it returns.
func (c *consumer) Drain(ctx context.Context) error {
	c.cc.Drain()
	select {
	case <-c.cc.Closed():
		return nil
	case <-ctx.Done():
		c.cc.Stop()
		return ctx.Err()
	}
}

// Close implements [pubsub.Consumer]: it flushes the connection, so that
// every verdict sent reached the server.
func (c *consumer) Close(ctx context.Context) error {
	c.cc.Stop()
	if c.b.nc.IsClosed() {
		return pubsub.ErrClosed
	}
	return c.b.nc.FlushWithContext(ctx)
}

// delivery is a JetStream message delivered to a consumer.
type delivery struct {
	m       jetstream.Msg
	msg     pubsub.Message
	attempt int
}

func newDelivery(m jetstream.Msg) *delivery {
	h := http.Header(m.Headers())
	d := &delivery{m: m, msg: pubsub.Message{Topic: m.Subject(), Header: h, Data: m.Data()}, attempt: 1}
	if id := h[headerMessageID]; len(id) > 0 { // a re-driven message
		d.msg.ID = id[0]
		delete(h, headerMessageID)
	} else if id := h[headerMsgID]; len(id) > 0 {
		d.msg.ID = id[0]
	}
	delete(h, headerMsgID)
	if topic, ok := strings.CutPrefix(d.msg.Topic, "_pubsub.redrive."); ok {
		_, d.msg.Topic, _ = strings.Cut(topic, ".") // after the subscription
	}
	if md, err := m.Metadata(); err == nil {
		d.attempt = int(md.NumDelivered)
	}
	return d
}

func (d *delivery) Message() *pubsub.Message { return &d.msg }
func (d *delivery) Attempt() int             { return d.attempt }
func (d *delivery) Ack() error               { return d.m.Ack() }
func (d *delivery) Term(reason string) error { return d.m.TermWithReason(reason) }

func (d *delivery) Nak(delay time.Duration) error {
	if delay <= 0 {
		return d.m.Nak()
	}
	return d.m.NakWithDelay(delay)
}
