package pubsub

import (
	"context"
	"net/http"
	"time"

	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/msgctx"
)

// MessageInfo describes the message that a handler is handling.
type MessageInfo struct {
	// ID is the message's id: delivered again (at-least-once), a message
	// keeps its id, so handlers that must not repeat an effect key it on ID
	// (see [Idempotent]).
	ID string
	// Topic is the topic the message was published to.
	Topic string
	// Subscription is the subscription that delivered it.
	Subscription string
	// Type is the full protobuf name of the message type.
	Type string
	// Attempt is the delivery attempt, from 1: the broker's delivery
	// count, less the deliveries that the subscriber gave back because a
	// handler of it still ran the message (it overran AckWait).
	Attempt int
	// MaxAttempts is the attempt after which a failure dead-letters the
	// message; 0 means no limit.
	MaxAttempts int
	// Header holds the message's headers, as the handler chain saw them.
	Header http.Header
	// Time is when the broker stored the message: when it was published,
	// the same on every attempt (natsjs: the JetStream server's clock;
	// mem: the process's). A re-driven message has the original's, which
	// its dead letter kept in [HeaderOriginalTime], not the re-drive's
	// (a header of a later time than the broker's is ignored). Zero when the
	// broker does not tell (one of your own whose Delivery has no
	// Timestamp method; natsjs for a message whose JetStream metadata has
	// no timestamp, or one that is not a positive number). An event's own
	// time, when it matters to the handler, belongs in the event (a
	// google.protobuf.Timestamp field).
	Time time.Time
}

// MessageInfoFrom returns the [MessageInfo] of the message handled under
// ctx, and false when ctx is not a handler's context. The interceptors of the
// handler chain ([WithHandlerOptions]) see it too: one that checks a
// caller's credentials on RPCs uses it to tell a delivery from a call. A
// call that a handler makes under its context sees it as well: to tell a
// delivery from an RPC the handler makes, compare the call's procedure
// with "/" + Topic + "/" + Subscription.
func MessageInfoFrom(ctx context.Context) (MessageInfo, bool) {
	info := msgctx.FromContext(ctx)
	if info == nil || info.Operation != msgctx.Process {
		return MessageInfo{}, false
	}
	mi := MessageInfo{
		ID:           info.MessageID,
		Topic:        info.Topic,
		Subscription: info.Subscription,
		Type:         info.MessageType,
		Attempt:      info.Attempt,
		MaxAttempts:  info.MaxAttempts,
	}
	if st := stateFrom(ctx); st != nil {
		mi.Header = st.header
		if st.stored != nil {
			mi.Time = st.stored.Timestamp()
		}
		if at, ok := originalTime(st.header, mi.Time); ok { // a re-drive's
			mi.Time = at
		}
	}
	return mi, true
}

// originalTime returns the time that h's [HeaderOriginalTime] holds, the
// original's of a re-driven message, if it is one (RFC 3339) and not later
// than stored, when the broker stored the message (zero: it does not tell).
func originalTime(h http.Header, stored time.Time) (time.Time, bool) {
	v := header.Get(h, HeaderOriginalTime)
	if v == "" {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || !stored.IsZero() && at.After(stored) {
		return time.Time{}, false
	}
	return at, true
}
