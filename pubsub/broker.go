package pubsub

import (
	"context"
	"iter"
	"net/http"
	"time"
)

// Broker is what package pubsub needs from a message broker: [mem.Broker]
// and [natsjs.Broker] implement it. Applications construct one, pass it to
// [NewPublisher] and [NewSubscriber], list and re-drive its dead letters and
// use Check as a readiness check; only driver authors implement it.
//
// Drivers share one conformance suite, [pubsubtest.Run].
//
// [mem.Broker]: https://pkg.go.dev/github.com/connectkit/connectkit/pubsub/mem#Broker
// [natsjs.Broker]: https://pkg.go.dev/github.com/connectkit/connectkit/pubsub/natsjs#Broker
// [pubsubtest.Run]: https://pkg.go.dev/github.com/connectkit/connectkit/pubsub/pubsubtest#Run
type Broker interface {
	// System names the messaging system for telemetry, as OpenTelemetry's
	// messaging.system attribute: "nats", "mem".
	System() string

	// Publish hands msg to the broker and returns without waiting for the
	// broker to store it; the Confirmation reports that. It blocks while the
	// broker's window of unconfirmed publishes is full, until ctx is done.
	// The broker owns msg once Publish is called. An error of Publish
	// after which the message certainly did not leave the process (the
	// broker closed, ctx done while waiting for room) wraps [ErrNotSent]
	// beside its cause ([ErrClosed], ctx's error).
	Publish(ctx context.Context, msg *Message) (Confirmation, error)

	// Subscribe creates or updates the durable subscription cfg.Subscription
	// on cfg.Topic (idempotently: instances calling it with the same
	// configuration share the subscription's messages) and calls deliver
	// with each message it fetches, one call at a time. deliver may block:
	// that is the subscriber's back-pressure. With cfg.Replay, it creates a
	// consumer of this call's own instead, which receives every message of
	// the topic from cfg.ReplaySince but no re-drive, and which the broker
	// removes when the Consumer is closed (or, for a networked broker, once
	// the process that made it is gone); the Consumer must then implement
	// [Replayer].
	Subscribe(ctx context.Context, cfg ConsumerConfig, deliver func(Delivery)) (Consumer, error)

	// DeadLetter stores dl in the dead-letter destination. It returns once
	// dl is stored: only then may the original delivery be terminated.
	DeadLetter(ctx context.Context, dl *DeadLetter) error

	// DeadLetters lists the dead letters of a topic and subscription, oldest
	// first; an empty topic or subscription matches any. It lists those
	// stored when the listing begins: the ones stored meanwhile (by
	// re-driving listed ones to a handler that still fails) wait for the
	// next listing.
	DeadLetters(ctx context.Context, topic, subscription string) iter.Seq2[*DeadLetter, error]

	// Redrive delivers a dead letter again, to its subscription only, as a
	// new message with the same id, headers and payload and a fresh attempt
	// count, then deletes the dead letter.
	Redrive(ctx context.Context, dl *DeadLetter) error

	// DeleteDeadLetter deletes a dead letter without delivering it.
	DeleteDeadLetter(ctx context.Context, dl *DeadLetter) error

	// Check reports whether the broker is reachable and usable: a readiness
	// check.
	Check(ctx context.Context) error
}

// ServerAddresser is implemented by a [Broker] that talks to a server over
// the network, as [natsjs.Broker] does. The spans of publishes and
// deliveries then carry its answer as server.address and server.port,
// which OpenTelemetry's messaging conventions ask for when known.
//
// [natsjs.Broker]: https://pkg.go.dev/github.com/connectkit/connectkit/pubsub/natsjs#Broker
type ServerAddresser interface {
	// ServerAddress returns the host:port of the server the broker is
	// connected to now, or "" when it is connected to none over the
	// network (between connections, or to a server in its own process).
	// It is called for sampled spans only, once per span.
	ServerAddress() string
}

// serverAddress returns b's ServerAddress method, or nil when b has none.
// Publishers and subscribers take it once, so that a message's
// msgctx.Info costs a copy of it, not a method value.
func serverAddress(b Broker) func() string {
	if a, ok := b.(ServerAddresser); ok {
		return a.ServerAddress
	}
	return nil
}

// DeadLetterPager is implemented by a [Broker] whose listing of dead letters
// can begin after a given one, as both of kit's brokers' can:
// [DeadLetterHandler] pages with it. Their refs grow with the order dead
// letters were stored in, so a listing after a ref deleted meanwhile (by a
// re-drive) begins where it would have.
type DeadLetterPager interface {
	// DeadLettersAfter is [Broker.DeadLetters] without the dead letters up to
	// the one whose Ref is after ("" lists from the first). An after that
	// is not a ref of the broker's form yields an error wrapping
	// [ErrBadRef].
	DeadLettersAfter(ctx context.Context, topic, subscription, after string) iter.Seq2[*DeadLetter, error]
}

// Message is a message as a broker stores it: the body and headers of the
// unary call that published it.
type Message struct {
	// ID identifies the message: handlers key idempotency on it.
	ID string
	// Deduplicate asks the broker to drop the message if another with the
	// same ID was published within its deduplication window. Publishers set
	// it when the application chose the ID ([WithMessageID]); generated ids
	// are unique already, and deduplication costs the broker work.
	Deduplicate bool
	// Topic is the subject the message was published to.
	Topic string
	// Header holds [HeaderContentType], [HeaderMessageType] and every header
	// the publishing client chain set (W3C traceparent, for example).
	Header http.Header
	// Data is the encoded message, as [HeaderContentType] says.
	Data []byte
}

// Confirmation reports whether the broker stored a published message.
type Confirmation interface {
	// Wait blocks until the broker confirms or rejects the message, or ctx
	// is done. It may be called again, and from several goroutines at
	// once: each call that the outcome reaches answers it.
	Wait(ctx context.Context) error
}

// ConsumerConfig is what a broker needs to consume a subscription.
type ConsumerConfig struct {
	// Topic is the topic to consume, valid as [ValidateTopic] says.
	Topic string
	// Subscription is the durable subscription's name, valid as
	// [ValidateSubscription] says.
	Subscription string
	// AckWait is how long the broker waits for a verdict on a delivery
	// before delivering the message again (to any instance).
	AckWait time.Duration
	// Prefetch is how many messages the consumer may fetch ahead of the
	// handlers.
	Prefetch int
	// Replay asks for a consumer of the Subscribe call's own rather than
	// the durable subscription (see [WithReplay]): it receives every message
	// of the topic that the broker retains, beginning with ReplaySince.
	// Subscription then only names it.
	Replay bool
	// ReplaySince, with Replay, is the time of the first message to
	// receive: the oldest the broker retains when zero.
	ReplaySince time.Time
}

// Replayer is a [Consumer] of a replaying subscription (see
// [ConsumerConfig].Replay), which reports whether it has caught up.
type Replayer interface {
	// CaughtUp reports whether every message that the consumer was to
	// receive and that the topic held when the consumer was created has
	// had its verdict (acknowledged or terminated): the backlog of its
	// start is handled. Once true, it may stay true without asking.
	CaughtUp(ctx context.Context) (bool, error)
}

// Consumer is one running consumption of a subscription. A Consumer may
// also have a method Err() error reporting a fault that keeps it from
// consuming (the broker lost it and has not made it again yet): the
// [Subscriber]'s Check then fails with that error, so that readiness does
// not say SERVING while nothing is consumed. It may also have a method
// Backlog(ctx context.Context) (pending, unacknowledged int64, err error)
// reporting, across every instance, the subscription's messages not yet
// delivered and those delivered without a verdict yet: the Subscriber
// exports them as the pubsub_pending_messages and
// pubsub_unacknowledged_messages gauges, asked at each scrape.
type Consumer interface {
	// Drain stops fetching and returns once deliver will not be called
	// again; messages fetched but not yet passed to deliver are passed to it
	// before Drain returns. When ctx is done first, Drain stops at once and
	// returns ctx's error; what it still held is delivered again after
	// AckWait.
	Drain(ctx context.Context) error
	// Close makes sure every verdict given so far reached the broker, then
	// releases the consumer. Unacknowledged deliveries are redelivered after
	// their AckWait.
	Close(ctx context.Context) error
}

// Delivery is one delivery of a message to a subscription. Exactly one of
// Ack, Nak and Term must be called.
//
// A Delivery may also have a method InProgress() error that restarts the
// broker's AckWait for it (JetStream's "+WPI"). The [Subscriber] calls it
// before a handler starts a message that waited a tenth of AckWait or more
// since the broker fetched it, and gives the handler the whole AckWait as
// its deadline (so too when the Delivery has no such method: the broker
// may then deliver the message again while it runs). A message that
// waited less has what was left of AckWait.
//
// A Delivery may also have a method Sequence() uint64: the message's
// position in the subscription's log (natsjs: its stream sequence; mem:
// its topic's), the same in every delivery of the message, or 0 when the
// Delivery cannot tell its message from another at that position (a
// position that a log created again reuses, with ids that repeat too). The
// Subscriber then acknowledges without handling a delivery of a message
// that it acknowledged or dead-lettered already after it had waited
// AckWait or more since its fetch (the broker delivered it again
// meanwhile).
//
// A Delivery may also have a method Timestamp() time.Time: when the broker
// stored the message (natsjs: its JetStream timestamp; mem: its publish),
// the same in every delivery of the message, which handlers read as
// [MessageInfo].Time; pubsubtest's suite expects it. A Delivery's message
// carries [HeaderOriginalTime] only if it is a re-drive (Redrive's), or the
// header would forge that time.
type Delivery interface {
	// Message is the delivered message; the subscriber owns it.
	Message() *Message
	// Attempt is the delivery count of the message for this subscription,
	// from 1.
	Attempt() int
	// Ack acknowledges the message: it is never delivered to the
	// subscription again.
	Ack() error
	// Nak asks for the message to be delivered again after delay.
	Nak(delay time.Duration) error
	// Term stops delivering the message to the subscription (after it was
	// dead-lettered).
	Term(reason string) error
}

// inProgresser is a Delivery whose AckWait the broker can restart (see
// [Delivery]).
type inProgresser interface{ InProgress() error }

// timestamped is a Delivery that tells when the broker stored its message
// (see [Delivery]).
type timestamped interface{ Timestamp() time.Time }

// DeadLetter is a message that a subscription gave up on, with why.
type DeadLetter struct {
	// Message is the original message: id, topic, headers and payload.
	Message Message
	// Subscription is the subscription that gave up.
	Subscription string
	// HandlerType is the full protobuf name of the message type that the
	// subscription's handler takes, such as "example.v1.ProfileChanged".
	// [DeadLetterHandler] shows the payload of a message without a
	// [HeaderMessageType] as this type. Brokers store it with the dead
	// letter; one that does not leaves it empty in DeadLetters.
	HandlerType string
	// Attempts is how many deliveries were made.
	Attempts int
	// Reason classifies why: see the Reason constants.
	Reason Reason
	// Error is the last error, as text. When the handler panicked, it ends
	// with the panic value, short: "internal: internal error (panic: …)".
	Error string
	// Time is when the message was dead-lettered.
	Time time.Time
	// Ref identifies the dead letter in the broker (for natsjs, its sequence
	// in the dead-letter stream); set by DeadLetters.
	Ref string
}

// Reason classifies why a message was dead-lettered. It is the reason label
// of pubsub_dead_lettered_total, so its set of values is small and fixed.
type Reason string

const (
	// ReasonMaxAttempts: the handler failed on every one of the allowed
	// attempts (or attempts ended without a verdict, as when the process
	// crashed while handling).
	ReasonMaxAttempts Reason = "max_attempts"
	// ReasonPermanent: the handler's error was marked [Permanent] or had a
	// Connect code that no retry can fix (InvalidArgument, FailedPrecondition,
	// OutOfRange, Unimplemented).
	ReasonPermanent Reason = "permanent"
	// ReasonTypeMismatch: the message's type header names another message
	// type than the handler takes.
	ReasonTypeMismatch Reason = "type_mismatch"
	// ReasonUndecodable: the payload cannot be decoded as the handler's
	// message type (bad bytes, unknown content type or encoding).
	ReasonUndecodable Reason = "undecodable"
)
