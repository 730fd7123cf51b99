package natsjs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
)

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
		_, err = retryLost(ctx, b, jsAPI("STREAM.CREATE", want.Name), func(ctx context.Context) (jetstream.Stream, error) {
			return b.js.CreateStream(ctx, want)
		})
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
	if _, err := retryLost(ctx, b, jsAPI("STREAM.UPDATE", have.Name), func(ctx context.Context) (jetstream.Stream, error) {
		return b.js.UpdateStream(ctx, have)
	}); err != nil {
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
