package pubsub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/deadline"
	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/msgctx"
	"google.golang.org/protobuf/types/known/emptypb"
)

// deliveryState is one delivery on its way through the handler chain. It
// holds what the call needs but the message, so that a delivery costs two
// allocations of pubsub's (this state, with its deadline and, in the same
// allocation, the request the chain sees: see stateFunc; and the message)
// and the decoded message's fields theirs (the rest are the chain's).
type deliveryState struct {
	info   msgctx.Info
	header http.Header // the request headers, as the handler saw them
	stored timestamped // the delivery, when it tells its message's time; else nil
	ran    bool        // the chain ran: the message decoded
	panic  string      // a panic no interceptor recovered: a description, for the dead letter
	// waitedOut: the message waited AckWait or more since its fetch (see
	// lateCopies).
	waitedOut bool

	ctx      stateContext
	deadline deadline.Ctx                    // the handler's, what is left of AckWait, unless ctx ends earlier
	req      any                             // the *deliveryRequest[M] allocated with this state
	resp     connect.Response[emptypb.Empty] // the handler's answer
}

// stateContext is the context of a delivery: it carries the delivery's state
// and its msgctx.Info without a context.WithValue allocation, and answers
// the lookups of known from known, without walking the contexts below it.
type stateContext struct {
	context.Context
	st    *deliveryState
	known *knownValues
}

type deliveryStateKey struct{}

func (c *stateContext) Value(key any) any {
	switch {
	case key == (deliveryStateKey{}):
		return c.st
	case msgctx.IsKey(key):
		return &c.st.info
	}
	if k := c.known; k != nil {
		switch key {
		case k.keys[0]:
			return k.values[0]
		case k.keys[1]:
			return k.values[1]
		}
	}
	return c.Context.Value(key)
}

func stateFrom(ctx context.Context) *deliveryState {
	st, _ := ctx.Value(deliveryStateKey{}).(*deliveryState)
	return st
}

// refreshAfter is the share of AckWait after which a message that waited
// for a handler since its fetch has the broker restart its AckWait before
// the handler starts: a message sent to the broker then, where the
// handler's deadline otherwise takes off the wait (see handle).
const refreshAfter = 10

// handle handles one delivery, which waited at most waited since the broker
// fetched it, in the worker of the given slot, and gives the broker its
// verdict.
func (s *Subscriber) handle(ctx context.Context, d Delivery, waited time.Duration, slot int) {
	msg, attempt := d.Message(), d.Attempt()
	if s.late.isCopy(d, attempt) {
		s.metrics.lateCopies.WithLabelValues(s.topic, s.name).Inc()
		s.logger.Warn("pubsub: a message waited longer than AckWait before a handler started it, and was delivered again meanwhile; acknowledging the copy of the message handled already (raise AckWait or lower Prefetch)",
			"message_id", msg.ID, "attempt", attempt, "ack_wait", s.cfg.AckWait)
		if err := d.Ack(); err != nil {
			s.metrics.ackErrors.WithLabelValues(s.topic, s.name).Inc()
		}
		return
	}
	seq := sequenceOf(d)
	if s.running.start(slot, seq, &msg.ID) {
		// Delivered again while a handler of this process still runs it
		// (it overran AckWait): not run twice at once. It comes again
		// after AckWait, when the handler's verdict (an ack settles it)
		// may have come; this delivery counts no attempt here.
		s.given.add(seq, msg.ID)
		s.metrics.givenBack.WithLabelValues(s.topic, s.name).Inc()
		s.logger.Warn("pubsub: a message was delivered again while a handler still runs it (the handler overran AckWait); not running it twice at once, it comes again after AckWait",
			"message_id", msg.ID, "attempt", attempt, "ack_wait", s.cfg.AckWait)
		if err := d.Nak(s.cfg.AckWait); err != nil {
			s.metrics.ackErrors.WithLabelValues(s.topic, s.name).Inc()
		}
		return
	}
	defer s.running.done(slot)
	// The broker counts AckWait from the fetch: the handler has what is
	// left of it, unless the broker restarts it now (it would otherwise
	// deliver the message again while the handler runs, or did so
	// already if the wait used up AckWait).
	budget := s.cfg.AckWait - waited
	if waited >= s.cfg.AckWait/refreshAfter {
		budget = s.cfg.AckWait // as before when the broker cannot restart it
		if p, ok := d.(inProgresser); ok {
			if err := p.InProgress(); err != nil {
				s.metrics.ackErrors.WithLabelValues(s.topic, s.name).Inc()
			}
		}
	}
	st := s.newState()
	st.waitedOut = waited >= s.cfg.AckWait
	st.stored, _ = d.(timestamped)
	st.info = msgctx.Info{
		Operation:    msgctx.Process,
		System:       s.system,
		Server:       s.server,
		Topic:        s.topic,
		Subscription: s.name,
		MessageID:    msg.ID,
		MessageType:  s.typeName,
		Attempt:      attempt,
		MaxAttempts:  s.cfg.MaxAttempts,
	}
	if attempt > 1 { // a first delivery has none to take off
		if n := s.given.of(seq, msg.ID); n > 0 {
			// Not the deliveries given back while a handler here ran it.
			st.info.Attempt = max(1, attempt-n)
		}
	}
	if st.info.Attempt > 1 {
		s.metrics.redelivered.WithLabelValues(s.topic, s.name).Inc()
	}
	// What the headers alone show goes first: a message past its last
	// attempt for one of these reasons (its dead letter could not be
	// stored) keeps its reason.
	if t := header.Get(msg.Header, HeaderMessageType); t != "" && t != s.typeName {
		s.deadLetter(ctx, d, st, ReasonTypeMismatch, fmt.Sprintf("message type %q, handler takes %q", t, s.typeName))
		return
	}
	ct := ContentTypeProto // without a Content-Type: from a producer that is not pubsub
	if h := header.Get(msg.Header, HeaderContentType); h != "" {
		if ct = payloadContentType(h); ct == "" {
			s.deadLetter(ctx, d, st, ReasonUndecodable, fmt.Sprintf("content type %q, want %q or %q", h, ContentTypeProto, ContentTypeJSON))
			return
		}
	}
	if ce := header.Get(msg.Header, headerContentEncoding); ce != "" && ce != "identity" {
		s.deadLetter(ctx, d, st, ReasonUndecodable, fmt.Sprintf("content encoding %q: pubsub does not decompress messages", ce))
		return
	}
	// A message delivered past its last attempt had attempts that ended
	// without a verdict (the process crashed or overran AckWait while
	// handling it; handling it again may crash again), or whose dead
	// letter could not be stored.
	if max := st.info.MaxAttempts; max > 0 && st.info.Attempt > max {
		s.deadLetter(ctx, d, st, ReasonMaxAttempts, fmt.Sprintf("no verdict after %d attempts (a crash, AckWait exceeded, or a dead letter not stored)", st.info.Attempt-1))
		return
	}

	err := s.invoke(ctx, st, msg, ct, budget)
	switch st.info.Outcome(err) {
	case msgctx.Ack:
		if err := d.Ack(); err != nil {
			s.verdictFailed("ack", st, err)
		} else {
			s.settled(d, st)
		}
	case msgctx.Retry:
		if err := d.Nak(s.cfg.Backoff.Delay(st.info.Attempt)); err != nil {
			s.verdictFailed("nak", st, err)
		}
	case msgctx.DeadLetter:
		noLimit := st.info
		noLimit.MaxAttempts = 0
		reason := ReasonMaxAttempts
		if noLimit.Outcome(err) == msgctx.DeadLetter {
			reason = ReasonPermanent
			if !st.ran {
				reason = ReasonUndecodable
			}
		}
		lastErr := err.Error()
		if p := panicOf(err, st); p != "" { // the chain's error says no more than Internal
			lastErr += " (panic: " + p + ")"
		}
		s.deadLetter(ctx, d, st, reason, lastErr)
	}
}

// invoke presents the delivery to the handler chain as a unary call with
// the deadline budget from now, and returns the chain's final error.
func (s *Subscriber) invoke(ctx context.Context, st *deliveryState, msg *Message, contentType string, budget time.Duration) (err error) {
	// One clock read for the handler's deadline and for the chain's timing
	// (msgctx.Info.Start): Logging and Metrics read it instead of the clock.
	st.info.Start = time.Now()
	if deadline.InitAt(&st.deadline, ctx, st.info.Start.Add(budget)) { // a timer only if the handler waits
		defer st.deadline.Cancel()
		ctx = &st.deadline
	}
	st.ctx = stateContext{Context: ctx, st: st, known: s.known}

	header := msg.Header
	if len(header[HeaderContentType]) == 0 {
		// A message from a producer other than pubsub: the chain sees the
		// content type it is decoded as, on a copy of the headers, so that
		// a dead letter keeps the message's own.
		header = make(http.Header, len(msg.Header)+1)
		maps.Copy(header, msg.Header)
		header[HeaderContentType] = []string{contentType}
	}
	st.header = header
	defer func() {
		if r := recover(); r != nil { // no interceptor recovered it
			st.panic = panicText(r)
			err = connect.NewError(connect.CodeInternal, errPanicked)
		}
	}()
	return s.call(&st.ctx, st, msg.Data, contentType)
}

var errPanicked = errors.New("handler panicked")

// panicOf describes the panic behind err, the chain's error: one that
// package interceptors' Recovery recovered (its error has a PanicValue
// method), or one that no interceptor did (invoke noted it in st).
func panicOf(err error, st *deliveryState) string {
	var recovered interface{ PanicValue() string }
	if errors.As(err, &recovered) {
		return panicText(recovered.PanicValue())
	}
	return st.panic
}

// maxPanicText bounds the description of a panic in a dead letter's error.
const maxPanicText = 200

// panicText describes the panic value r on one line of at most
// maxPanicText bytes, then an ellipsis.
func panicText(r any) string {
	s := strings.Join(strings.Fields(fmt.Sprint(r)), " ")
	if len(s) > maxPanicText {
		s = strings.ToValidUTF8(s[:maxPanicText], "") + "…"
	}
	return s
}

// deadLetter stores the message in the dead-letter destination, then
// terminates the delivery. If the dead letter cannot be stored, the message
// is delivered again after a backoff. A replaying subscriber stores none
// (see [WithReplay]): it logs the message at error and terminates it.
func (s *Subscriber) deadLetter(ctx context.Context, d Delivery, st *deliveryState, reason Reason, lastErr string) {
	msg := d.Message()
	if s.replay {
		s.logger.Error("pubsub: message given up by a replaying subscription; not stored as a dead letter (its next start replays it)",
			"message_id", msg.ID, "type", st.info.MessageType, "attempt", st.info.Attempt,
			"reason", string(reason), "error", lastErr)
	} else if !s.storeDeadLetter(ctx, d, st, reason, lastErr) {
		return
	}
	s.metrics.deadLettered.WithLabelValues(s.topic, s.name, string(reason)).Inc()
	if err := d.Term(string(reason)); err != nil {
		s.verdictFailed("term", st, err)
	} else {
		s.settled(d, st)
	}
}

// settled notes that d's message was acknowledged or terminated: its
// copies delivered meanwhile, if it waited out AckWait or had copies
// given back, are acknowledged without a handler (see lateCopies), and
// its copies given back are forgotten.
func (s *Subscriber) settled(d Delivery, st *deliveryState) {
	if s.given.take(d) > 0 || st.waitedOut {
		s.late.add(d)
	}
}

// storeDeadLetter stores the message in the dead-letter destination and
// logs it, and reports whether it did: if not, it had the message
// delivered again after a backoff.
func (s *Subscriber) storeDeadLetter(ctx context.Context, d Delivery, st *deliveryState, reason Reason, lastErr string) bool {
	msg := d.Message()
	dl := &DeadLetter{
		Message:      Message{ID: msg.ID, Topic: msg.Topic, Header: msg.Header.Clone(), Data: msg.Data},
		Subscription: s.name,
		HandlerType:  s.typeName,
		Attempts:     st.info.Attempt,
		Reason:       reason,
		Error:        lastErr,
		Time:         time.Now(),
	}
	keepOriginalTime(&dl.Message, st.stored)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckWait)
	defer cancel()
	if err := s.broker.DeadLetter(ctx, dl); err != nil {
		// A Connect code as a publish's: resource_exhausted when the
		// destination's limits refuse the dead letter, which no retry
		// fixes until an operator raises them.
		err = brokerError(ctx, err)
		code := connect.CodeOf(err).String()
		s.metrics.ackErrors.WithLabelValues(s.topic, s.name).Inc()
		s.metrics.deadLetterErrors.WithLabelValues(s.topic, s.name, code).Inc()
		s.logger.Error("pubsub: failed to store the dead letter; the message will be delivered again",
			"message_id", msg.ID, "attempt", st.info.Attempt, "reason", string(reason), "code", code, "error", err)
		if err := d.Nak(s.cfg.Backoff.Delay(st.info.Attempt)); err != nil {
			s.verdictFailed("nak", st, err)
		}
		return false
	}
	s.logger.Warn("pubsub: message dead-lettered",
		"message_id", msg.ID, "type", st.info.MessageType, "attempt", st.info.Attempt,
		"reason", string(reason), "error", lastErr)
	return true
}

// keepOriginalTime sets the HeaderOriginalTime of msg, a dead letter's
// copy of a message, to when the broker stored the message, unless msg has
// an earlier one already (a re-drive, which the broker stored later) or
// the broker does not tell. A value that is no time, or a later one (a
// producer's outside pubsub), is replaced: the re-drive would lose the
// original's time.
func keepOriginalTime(msg *Message, stored timestamped) {
	if stored == nil {
		return
	}
	at := stored.Timestamp()
	if _, ok := originalTime(msg.Header, at); ok || at.IsZero() {
		return
	}
	if msg.Header == nil {
		msg.Header = make(http.Header, 1)
	}
	msg.Header[HeaderOriginalTime] = []string{at.UTC().Format(time.RFC3339Nano)}
}

func (s *Subscriber) verdictFailed(op string, st *deliveryState, err error) {
	s.metrics.ackErrors.WithLabelValues(s.topic, s.name).Inc()
	s.logger.Error("pubsub: failed to send verdict; the message will be delivered again",
		"op", op, "message_id", st.info.MessageID, "attempt", st.info.Attempt, "error", err)
}
