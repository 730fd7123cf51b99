package natsjs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

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

// streamState remembers that a topic's stream was set up: by a publish,
// which also sets its limits, and by a subscriber or a re-drive, which
// leave an existing stream's limits as they are.
type streamState struct {
	once      onceErr   // the publishers' setup (see ensureStream)
	read      onceErr   // the subscribers' and re-drives' setup
	notBefore time.Time // when the stream may be created again, after it was lost
	// upsert is held by the setup that runs upsertStream, the publishers'
	// or the others': each reads the stream's config and writes it whole,
	// and of two at once the second would write what it read before the
	// first's update, putting back what that changed (a publisher's MaxAge,
	// say, under a subscriber that adds a subject).
	upsert chan struct{}
}

// newStreamState returns the state of a stream not set up yet, which may
// be created from notBefore on.
func newStreamState(notBefore time.Time) *streamState {
	return &streamState{notBefore: notBefore, upsert: make(chan struct{}, 1)}
}

// streamLost makes the next ensureStream of topic look its stream up
// again, and create it, if it is gone, only once healDelay has passed:
// nats-server (2.15) answers a stream's deletion
// before it has moved the stream's files away, and a stream of the same
// name created within milliseconds can lose its directory to that move and
// then fail every write, so that no publish is ever acknowledged.
func (b *Broker) streamLost(topic string) {
	b.streams.Store(topic, newStreamState(time.Now().Add(healDelay)))
}

// forgetStreams makes the next ensureStream of every topic look its stream
// up again (after a reconnect the server may have come back without its
// storage, or be another one), keeping when a lost stream may be created
// again: a reconnect within healDelay of a loss must not make it at once
// (see streamLost). A state replaced meanwhile, by streamLost, stays.
func (b *Broker) forgetStreams() {
	b.streams.Range(func(topic, st any) bool {
		b.streams.CompareAndSwap(topic, st, newStreamState(st.(*streamState).notBefore))
		return true
	})
}

// streamReady reports whether ensureStream has set up the stream of topic.
func (b *Broker) streamReady(topic string) bool {
	st, ok := b.streams.Load(topic)
	return ok && st.(*streamState).once.isDone()
}

// ensureStream creates the stream of topic, or updates it, once per broker
// for publishes and once for subscribers and re-drives. Only a publish
// (limits) sets an existing stream's limits (MaxAge, DuplicateWindow,
// Replicas) to this broker's Config: the topic's retention is its
// producer's to choose, and a service that only consumes the topic, whose
// NATS_MAX_AGE may differ, must not shorten it (nor two services set it in
// turn at each of their starts).
func (b *Broker) ensureStream(ctx context.Context, topic string, limits bool) error {
	st, ok := b.streams.Load(topic)
	if !ok {
		st, _ = b.streams.LoadOrStore(topic, newStreamState(time.Time{}))
	}
	state := st.(*streamState)
	once := &state.read
	if limits {
		once = &state.once
	}
	return once.do(ctx, func() error {
		select {
		case state.upsert <- struct{}{}:
			defer func() { <-state.upsert }()
		case <-ctx.Done():
			return fmt.Errorf("natsjs: waiting to set up stream %s for %s: %w", streamName(topic), topic, ctx.Err())
		}
		return b.upsertStream(ctx, state.notBefore, limits, jetstream.StreamConfig{
			Name:       streamName(topic),
			Subjects:   []string{topic, redriveSubject("*", topic)},
			Retention:  jetstream.LimitsPolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   b.cfg.Replicas,
			MaxAge:     b.cfg.MaxAge,
			Duplicates: b.cfg.DuplicateWindow,
			Discard:    jetstream.DiscardOld,
		}, topic)
	})
}

// JetStream error codes that nats.go has no sentinel for: a stream whose
// subjects overlap those of another stream, and a message, or its
// headers, over what its stream takes (nats-server's errors.json).
const (
	jsErrStreamSubjectOverlap jetstream.ErrorCode = 10065
	jsErrMessageTooLarge      jetstream.ErrorCode = 10054
	jsErrHeaderTooLarge       jetstream.ErrorCode = 10097
	jsErrStoreFailed          jetstream.ErrorCode = 10077
)

// streamFull reports whether apiErr is a discard-new stream's refusal of a
// message over its limits. nats-server (2.15, stream.go processJetStreamMsg)
// answers it, and any other failure to store (an I/O error), with the one
// generic code 10077 whose description is the store's error text: that
// text, compared whole with its store.go sentinels (ErrMaxMsgs,
// ErrMaxBytes, ErrMaxMsgsPerSubject), is the only thing that tells them
// apart. A server that words them otherwise gets Unavailable, as before.
func streamFull(apiErr *jetstream.APIError) bool {
	if apiErr.ErrorCode != jsErrStoreFailed {
		return false
	}
	switch apiErr.Description {
	case "maximum messages exceeded", "maximum bytes exceeded", "maximum messages per subject exceeded":
		return true
	}
	return false
}

// storeTooLarge reports whether apiErr is a file store's refusal of a
// message over its record limit (32 MiB), which a server's max_payload
// (up to 64 MiB) lets through: the generic code 10077 with store.go's
// ErrMsgTooLarge text, told apart as streamFull tells its own.
func storeTooLarge(apiErr *jetstream.APIError) bool {
	return apiErr.ErrorCode == jsErrStoreFailed && apiErr.Description == "message too large"
}

// createStreamError is the error of creating the stream of want. A stream
// made outside pubsub that holds its subject (Watermill's, or an
// operator's on "orders.>") is FailedPrecondition, as a name clash is: no
// retry mends it.
func (b *Broker) createStreamError(ctx context.Context, want jetstream.StreamConfig, owner string, err error) error {
	if perr := b.placementError("create stream "+want.Name+" for "+owner, want, err); perr != nil {
		return perr
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrStreamSubjectOverlap {
		return fmt.Errorf("natsjs: failed to create stream %s for %s: %w", want.Name, owner, err)
	}
	other := "another stream"
	for _, subject := range want.Subjects {
		name, lerr := b.js.StreamNameBySubject(ctx, subject)
		if lerr != nil {
			continue
		}
		if topic := b.streamTopic(ctx, name); topic != "" {
			// Another topic's stream, to which an operator added this
			// subject (upsertStream keeps it): deleting that stream, the
			// mend below, would drop the other topic's messages.
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
				"natsjs: cannot create stream %s for %s: stream %s, pubsub's for topic %s, also holds %s (a subject added to it by hand): remove %s from that stream's subjects, or use another topic: %w",
				want.Name, owner, name, topic, subject, subject, err))
		}
		other = "stream " + name
		break
	}
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
		"natsjs: cannot create stream %s for %s: %s, made outside pubsub, overlaps its subjects %v: delete that stream once drained, or use another topic: %w",
		want.Name, owner, other, want.Subjects, err))
}

// streamTopic returns the topic whose stream, as pubsub makes it, the
// stream named name is (it holds the topic's re-drive subject), or "".
func (b *Broker) streamTopic(ctx context.Context, name string) string {
	s, err := b.js.Stream(ctx, name)
	if err != nil {
		return ""
	}
	for _, subject := range s.CachedInfo().Config.Subjects {
		if topic, ok := strings.CutPrefix(subject, redriveSubject("*", "")); ok && streamName(topic) == name {
			return topic
		}
	}
	return ""
}

// sleepCtx waits for d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// upsertStream creates the stream of want, not before notBefore (see
// streamLost), or updates the fields this driver manages on an existing
// one: the subjects it needs (added to those the stream has), and with
// limits its replicas, MaxAge and duplicate window too. owner names what the stream is for, in the error when a
// stream of that name holds other subjects.
func (b *Broker) upsertStream(ctx context.Context, notBefore time.Time, limits bool, want jetstream.StreamConfig, owner string) error {
	s, err := b.lookupStream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if err := sleepCtx(ctx, time.Until(notBefore)); err != nil {
			return fmt.Errorf("natsjs: waiting to create the lost stream %s for %s again: %w", want.Name, owner, err)
		}
		_, err = retryLost(ctx, func(ctx context.Context) (jetstream.Stream, error) { return b.js.CreateStream(ctx, want) })
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			if err != nil {
				return b.createStreamError(ctx, want, owner, err)
			}
			return nil
		}
		s, err = b.lookupStream(ctx, want.Name) // another instance created it
	}
	if err != nil {
		return fmt.Errorf("natsjs: failed to look up stream %s for %s: %w", want.Name, owner, err)
	}
	// UpdateStream writes the config whole and JetStream has no
	// compare-and-set for it: another instance that read the config before
	// this one's update and writes after it puts back what this one
	// changed (its own limits kept from what it read). So the config is
	// read back after an update, and the update made again while what this
	// broker manages is not there (ensureStream keeps two of one process
	// from racing so).
	for attempt := 1; ; attempt++ {
		changed, err := b.updateStream(ctx, s.CachedInfo().Config, limits, want, owner)
		if err != nil || !changed || attempt == maxStreamUpdates {
			return err
		}
		if sleepCtx(ctx, streamUpdateSettle) != nil {
			return nil // updated: the check after is what ctx did not leave room for
		}
		if s, err = b.lookupStream(ctx, want.Name); err != nil {
			return fmt.Errorf("natsjs: failed to look up stream %s for %s after updating it: %w", want.Name, owner, err)
		}
	}
}

// maxStreamUpdates bounds the updates of one upsertStream: each after
// another instance's update put back what the one before changed.
const maxStreamUpdates = 3

// streamUpdateSettle is how long upsertStream waits after an update before
// it reads the stream back: another instance's update made from the
// config as it was before leaves that instance a round trip after its
// read, which a stalled process (a loaded machine, a GC pause) stretches;
// read back at once, the stream showed this update 8 rounds of 60 where
// the other's put it back just after (two brokers on one server, -race, a
// load average of 15-20 on 2 cores). Only a start that changed the stream
// waits it.
const streamUpdateSettle = 100 * time.Millisecond

// updateStream checks have, the config of the existing stream of want, and
// updates the fields this driver manages (see upsertStream) where they
// differ from want's, reporting whether it did.
func (b *Broker) updateStream(ctx context.Context, have jetstream.StreamConfig, limits bool, want jetstream.StreamConfig, owner string) (bool, error) {
	if !slices.Contains(have.Subjects, want.Subjects[0]) {
		// FailedPrecondition: no retry mends it (publishers and the chain
		// read the code), only a rename does.
		return false, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("natsjs: stream %s exists with subjects %v, not %s: %s", want.Name, have.Subjects, want.Subjects[0], b.renameMend(want.Name, "rename one of the topics")))
	}
	if have.Retention != want.Retention || have.Storage != want.Storage {
		// None works: a work-queue stream takes one consumer, an interest
		// one drops what every subscription acknowledged (replays and new
		// subscriptions miss it), memory storage loses acknowledged
		// messages at a server restart. Adopting such a stream, as before,
		// hid all three until they struck. nats-server changes neither the
		// storage nor a work queue's retention of an existing stream, but
		// it does change interest retention to limits: the operator's to
		// do, whose stream it is.
		mend := "delete it once drained, or " + b.renameMend(want.Name, "use another topic")
		if have.Storage == want.Storage && have.Retention == jetstream.InterestPolicy {
			mend = "set its retention to limits (nats stream edit " + want.Name + " --retention limits)"
		}
		return false, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"natsjs: stream %s for %s has %s retention and %s storage, where pubsub needs limits retention and file storage: it was not made by pubsub; %s",
			want.Name, owner, strings.ToLower(have.Retention.String()), strings.ToLower(have.Storage.String()), mend))
	}
	if have.NoAck {
		// The stream stores every publish and answers none: each would
		// fail Unavailable after PublishTimeout, inviting a retry that
		// stores it again. nats-server changes it in place. A subscriber
		// would consume it, but its re-drives publish into it, so it is
		// refused as well (README, Configuration (NATS)).
		return false, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"natsjs: stream %s for %s does not acknowledge publishes (no_ack), where pubsub waits for each acknowledgement: it was not made by pubsub; make it acknowledge them (nats stream edit %s --ack)",
			want.Name, owner, want.Name))
	}
	if !limits {
		want.Replicas, want.MaxAge, want.Duplicates = have.Replicas, have.MaxAge, have.Duplicates
	}
	if !b.replicasSet {
		// The default, 1, must not take an operator's or another
		// service's replicas away from a stream (Config.Replicas).
		want.Replicas = have.Replicas
	}
	// The subjects pubsub needs are added to the stream's, never put in
	// their place: a subject an operator added to the stream stays.
	subjects := slices.Clone(have.Subjects)
	for _, subject := range want.Subjects {
		if !slices.Contains(subjects, subject) {
			subjects = append(subjects, subject)
		}
	}
	if len(subjects) == len(have.Subjects) && have.Replicas == want.Replicas &&
		have.MaxAge == want.MaxAge && have.Duplicates == want.Duplicates {
		return false, nil
	}
	have.Subjects, have.Replicas, have.MaxAge, have.Duplicates = subjects, want.Replicas, want.MaxAge, want.Duplicates
	if _, err := retryLost(ctx, func(ctx context.Context) (jetstream.Stream, error) { return b.js.UpdateStream(ctx, have) }); err != nil {
		if perr := b.placementError("update stream "+want.Name+" for "+owner, have, err); perr != nil {
			return false, perr
		}
		return false, fmt.Errorf("natsjs: failed to update stream %s for %s: %w", want.Name, owner, err)
	}
	return true, nil
}

// renameMend is the mend, in an error, for the stream named name that clashes with
// one made outside pubsub: topic's for a topic's stream, and for the
// dead-letter stream, whose name no topic gives, its setting.
func (b *Broker) renameMend(name, topic string) string {
	if name == b.cfg.DeadLetterStream {
		return "name the dead-letter stream otherwise (NATS_DEAD_LETTER_STREAM)"
	}
	return topic
}
