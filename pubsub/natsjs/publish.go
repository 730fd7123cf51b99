package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of JetStream and of this driver.
const (
	headerMsgID = "Nats-Msg-Id" // JetStream's deduplication key
	// headerMessageID carries the pubsub message id when JetStream is not to
	// deduplicate on it, and on a re-driven message, whose Nats-Msg-Id is the
	// re-drive's own deduplication key.
	headerMessageID = "Pubsub-Message-Id"
)

// streamName is the name of a topic's stream: the topic with its dots
// turned to underscores.
func streamName(topic string) string { return strings.ReplaceAll(topic, ".", "_") }

// redriveSubject is where re-driven messages of a subscription go: a subject
// of the topic's stream that only that subscription's consumer reads.
func redriveSubject(subscription, topic string) string {
	return redrivePrefix + subscription + "." + topic
}

const redrivePrefix = "_pubsub.redrive."

// redriveOf returns the subscription a re-drive subject is for, or "" for a
// topic's subject.
func redriveOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, redrivePrefix)
	if !ok {
		return ""
	}
	sub, _, _ := strings.Cut(rest, ".")
	return sub
}

// Publish implements [pubsub.Broker]: an asynchronous JetStream publish,
// within Config.PublishWindow unacknowledged publishes. The message id is
// Nats-Msg-Id (JetStream deduplicates on it) when the message is to be
// deduplicated, header Pubsub-Message-Id otherwise: deduplication costs the
// server a third of its throughput.
func (b *Broker) Publish(ctx context.Context, msg *pubsub.Message) (pubsub.Confirmation, error) {
	if b.nc.IsClosed() {
		return nil, notSent(pubsub.ErrClosed)
	}
	if !b.streamReady(msg.Topic) {
		// Within PublishTimeout: a JetStream request lost with a server
		// (a cluster losing its leader) waits for its whole deadline, and
		// the caller's may be far longer.
		setupCtx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
		err := b.ensureStream(setupCtx, msg.Topic, true)
		cancel()
		if err != nil {
			return nil, b.notSentError(msg.Topic, err)
		}
	}
	select {
	case b.window <- struct{}{}: // room in the window: no select on three channels
	default:
		select {
		case b.window <- struct{}{}:
		case <-ctx.Done(): // waiting for room: nothing sent yet
			return nil, notSent(ctx.Err())
		case <-b.closed:
			return nil, notSent(pubsub.ErrClosed)
		}
	}
	c := &confirmation{b: b, topic: msg.Topic}
	h := nats.Header(msg.Header)
	if h == nil {
		h = nats.Header{}
	}
	if msg.ID != "" {
		c.id[0] = msg.ID
		if msg.Deduplicate {
			h[headerMsgID] = c.id[:]
		} else {
			h[headerMessageID] = c.id[:]
		}
	}
	c.msg = nats.Msg{Subject: msg.Topic, Header: h, Data: msg.Data}
	if err := b.acks.publish(c); err != nil {
		<-b.window
		if u, ok := err.(unsentError); ok {
			return nil, b.notSentError(msg.Topic, u.err)
		}
		return nil, b.publishError(msg.Topic, err)
	}
	return c, nil
}

// confirmation is one asynchronous publish: the message, its id header's
// value and its outcome, in one allocation, which the server's
// acknowledgement settles (see acks).
type confirmation struct {
	msg   nats.Msg
	id    [1]string
	b     *Broker
	topic string

	// Guarded by acks.mu.
	sentAt  uint64 // acks.sweeps when the message was sent
	retries int    // sends again after no stream answered

	mu      sync.Mutex
	settled bool          // err is the outcome
	err     error         // the outcome: nil once the broker stored the message
	done    chan struct{} // made by a Wait before the outcome; closed with it
}

// settle records the outcome of the publish and frees its room in the
// window, once.
func (c *confirmation) settle(err error) {
	c.mu.Lock()
	if c.settled {
		c.mu.Unlock()
		return
	}
	c.settled, c.err = true, err
	if c.done != nil {
		close(c.done)
	}
	c.mu.Unlock()
	<-c.b.window
}

func (c *confirmation) Wait(ctx context.Context) error {
	c.mu.Lock()
	if c.settled {
		c.mu.Unlock()
		return c.err
	}
	if c.done == nil {
		c.done = make(chan struct{})
	}
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
		return c.err // written before done was closed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Broker) publishError(topic string, err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
		return fmt.Errorf("%w: %w", pubsub.ErrClosed, err)
	}
	if rerr := b.refused("publish to "+topic, err); rerr != nil {
		return rerr
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		b.streamLost(topic) // deleted behind our back: create it again on the next publish
	}
	return fmt.Errorf("natsjs: publish to %s failed: %w", topic, err)
}

// refused returns err, the error of the publish that what names, as a
// ResourceExhausted error saying why the server or the stream refused to
// store the message, when no retry can fix that (until an operator
// raises a limit, or consumers or MaxAge make room); nil for any other
// error. Unavailable, the code of the others, invited retrying at once.
func (b *Broker) refused(what string, err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("natsjs: %s failed: message over the server's max payload of %d bytes: %w", what, b.nc.MaxPayload(), err))
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return nil
	}
	if apiErr.ErrorCode == jsErrMessageTooLarge || apiErr.ErrorCode == jsErrHeaderTooLarge || storeTooLarge(apiErr) {
		// The stream's own limit (an operator's max_msg_size) or its
		// store's: as over the max payload, no retry can fix it.
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("natsjs: %s refused by its stream: %w", what, err))
	}
	if streamFull(apiErr) { // a discard-new stream at its limit
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("natsjs: %s refused: its stream is full (discard new policy): %w", what, err))
	}
	return nil
}

// notSentError is the error of a publish given up before its message left
// the process, with err: its stream's setup failed (before the first
// connection, the lookup waited until NATS_PUBLISH_TIMEOUT), or nats.go
// refused it unwritten (see refusedUnwritten). It wraps pubsub.ErrNotSent
// and err as publishError makes it (a connection closed is
// pubsub.ErrClosed); a *connect.Error (a stream that cannot be made, a
// message over the max payload) keeps its code, outermost.
func (b *Broker) notSentError(topic string, err error) error {
	if _, ok := err.(*connect.Error); !ok {
		err = b.publishError(topic, err)
	}
	if ce, ok := err.(*connect.Error); ok {
		return connect.NewError(ce.Code(), notSent(ce.Unwrap()))
	}
	return notSent(err)
}

// notSent wraps err, the error of a publish whose message never left the
// process, with pubsub.ErrNotSent: "pubsub: message not sent: " and err.
func notSent(err error) error {
	return fmt.Errorf("pubsub: message %w: %w", pubsub.ErrNotSent, err)
}
