package natsjs

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a dead letter, besides the original message's.
const (
	headerSubscription = "Pubsub-Subscription"
	headerHandlerType  = "Pubsub-Handler-Type"
	headerAttempts     = "Pubsub-Attempts"
	headerReason       = "Pubsub-Reason"
	headerError        = "Pubsub-Error"
	headerDeadAt       = "Pubsub-Dead-Lettered-At"
)

const deadPrefix = "_pubsub.dead."

func deadSubject(subscription, topic string) string {
	return deadPrefix + subscription + "." + topic
}

// ensureDeadLetterStream creates the dead-letter stream, with this
// broker's Replicas and DuplicateWindow, or brings an existing one's
// subjects up to date, once per broker. Its limits are left as they are:
// every service of a NATS system shares the stream (and its name's
// default), so the one that created it, its first dead letter, set them,
// and only an operator changes them (nats stream edit); each service
// setting them to its own Config at its first dead letter would set them
// in turn.
func (b *Broker) ensureDeadLetterStream(ctx context.Context) error {
	return b.dlOnce.do(ctx, func() error {
		return b.upsertStream(ctx, time.Unix(0, b.dlNotBefore.Load()), false, jetstream.StreamConfig{
			Name:        b.cfg.DeadLetterStream,
			Description: "pubsub dead letters",
			Subjects:    []string{deadPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    b.cfg.Replicas,
			Duplicates:  b.cfg.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		}, "dead letters")
	})
}

// DeadLetter implements [pubsub.Broker]: a synchronous publish to the
// dead-letter stream, with the original headers and payload.
func (b *Broker) DeadLetter(ctx context.Context, dl *pubsub.DeadLetter) error {
	if err := b.errIfClosed(); err != nil {
		return err
	}
	if err := b.ensureDeadLetterStream(ctx); err != nil {
		return err
	}
	h := make(nats.Header, len(dl.Message.Header)+7)
	for k, v := range dl.Message.Header {
		h[k] = v
	}
	delete(h, headerMsgID) // a dead letter of a re-driven message must not be a duplicate
	h[headerMessageID] = []string{dl.Message.ID}
	h[headerSubscription] = []string{dl.Subscription}
	delete(h, headerHandlerType) // the broker's own header, whatever the message carried
	if dl.HandlerType != "" {
		h[headerHandlerType] = []string{dl.HandlerType}
	}
	h[headerAttempts] = []string{strconv.Itoa(dl.Attempts)}
	h[headerReason] = []string{string(dl.Reason)}
	h[headerError] = []string{headerSafe(dl.Error, 1024)}
	h[headerDeadAt] = []string{dl.Time.UTC().Format(time.RFC3339Nano)}
	msg := &nats.Msg{Subject: deadSubject(dl.Subscription, dl.Message.Topic), Header: h, Data: dl.Message.Data}
	_, err := b.js.PublishMsg(ctx, msg)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		// The stream was deleted behind our back (no stream answers its
		// subjects): create it again, once.
		b.dlNotBefore.Store(time.Now().Add(healDelay).UnixNano()) // see streamLost
		b.dlOnce.reset()
		if err := b.ensureDeadLetterStream(ctx); err != nil {
			return err
		}
		_, err = b.js.PublishMsg(ctx, msg)
	}
	if err != nil {
		// The stream's limits (max_msg_size, max_bytes with discard new)
		// refuse it as they would a publish: the subscriber logs and counts
		// the code, and has the message delivered again.
		if rerr := b.refused("dead letter to stream "+b.cfg.DeadLetterStream, err); rerr != nil {
			return rerr
		}
		return fmt.Errorf("natsjs: failed to store dead letter: %w", err)
	}
	return nil
}

// headerSafe makes s a header value: one line, at most n bytes.
func headerSafe(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// DeadLetters implements [pubsub.Broker]. It reads the dead-letter stream
// message by message (a request each), which suits the small numbers dead
// letters come in, up to the stream's last message when the listing begins:
// the dead letters stored after that (by re-driving the listed ones to a
// handler that still fails, say) are left for the next listing, as a
// snapshot would.
func (b *Broker) DeadLetters(ctx context.Context, topic, subscription string) iter.Seq2[*pubsub.DeadLetter, error] {
	return b.DeadLettersAfter(ctx, topic, subscription, "")
}

// DeadLettersAfter implements [pubsub.DeadLetterPager]: a ref is the dead
// letter's sequence in the dead-letter stream, and the listing begins at
// the next one.
func (b *Broker) DeadLettersAfter(ctx context.Context, topic, subscription, after string) iter.Seq2[*pubsub.DeadLetter, error] {
	return func(yield func(*pubsub.DeadLetter, error) bool) {
		var from uint64
		if after != "" {
			var err error
			if from, err = strconv.ParseUint(after, 10, 64); err != nil {
				yield(nil, fmt.Errorf("%w: natsjs's refs are sequence numbers, not %q", pubsub.ErrBadRef, after))
				return
			}
		}
		if err := b.errIfClosed(); err != nil {
			yield(nil, err)
			return
		}
		s, err := b.lookupStream(ctx, b.cfg.DeadLetterStream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return
		}
		if err != nil {
			yield(nil, fmt.Errorf("natsjs: failed to open the dead-letter stream: %w", err))
			return
		}
		filter := deadSubject(or(subscription, "*"), or(topic, ">"))
		last := s.CachedInfo().State.LastSeq // read by js.Stream just now
		if from >= last {
			return
		}
		for seq := from + 1; seq <= last; {
			raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return
			}
			if err != nil {
				yield(nil, fmt.Errorf("natsjs: failed to read dead letters: %w", err))
				return
			}
			if raw.Sequence > last {
				return
			}
			seq = raw.Sequence + 1
			if !yield(parseDeadLetter(raw), nil) {
				return
			}
		}
	}
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

func parseDeadLetter(raw *jetstream.RawStreamMsg) *pubsub.DeadLetter {
	h := http.Header(raw.Header)
	dl := &pubsub.DeadLetter{
		Message:      pubsub.Message{ID: first(h, headerMessageID), Data: raw.Data},
		Subscription: first(h, headerSubscription),
		HandlerType:  first(h, headerHandlerType),
		Reason:       pubsub.Reason(first(h, headerReason)),
		Error:        first(h, headerError),
		Ref:          strconv.FormatUint(raw.Sequence, 10),
	}
	dl.Attempts, _ = strconv.Atoi(first(h, headerAttempts))
	dl.Time, _ = time.Parse(time.RFC3339Nano, first(h, headerDeadAt))
	if rest, ok := strings.CutPrefix(raw.Subject, deadPrefix); ok {
		_, dl.Message.Topic, _ = strings.Cut(rest, ".")
	}
	dl.Message.Header = originalHeader(h)
	return dl
}

// originalHeader returns the headers of a dead letter that the original
// message had.
func originalHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		switch k {
		case headerMessageID, headerSubscription, headerHandlerType, headerAttempts, headerReason, headerError, headerDeadAt, headerMsgID:
			continue
		}
		out[k] = v
	}
	return out
}

func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Redrive implements [pubsub.Broker]: it publishes the stored message to the
// subscription's re-drive subject (deduplicated on the dead letter's
// sequence, so a retried Redrive delivers once), then deletes the dead
// letter.
func (b *Broker) Redrive(ctx context.Context, dl *pubsub.DeadLetter) error {
	s, seq, err := b.deadLetterRef(ctx, dl)
	if err != nil {
		return err
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("natsjs: failed to read dead letter %d: %w", seq, err)
	}
	stored := parseDeadLetter(raw)
	if err := b.ensureStream(ctx, stored.Message.Topic, false); err != nil {
		return err
	}
	h := nats.Header(stored.Message.Header)
	h[headerMessageID] = []string{stored.Message.ID}
	h[headerMsgID] = []string{"redrive-" + b.cfg.DeadLetterStream + "-" + dl.Ref}
	msg := &nats.Msg{Subject: redriveSubject(stored.Subscription, stored.Message.Topic), Header: h, Data: stored.Message.Data}
	_, err = b.js.PublishMsg(ctx, msg)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		// The topic's stream was deleted behind our back: create it again,
		// once (after healDelay: see streamLost).
		b.streamLost(stored.Message.Topic)
		if err := b.ensureStream(ctx, stored.Message.Topic, false); err != nil {
			return err
		}
		_, err = b.js.PublishMsg(ctx, msg)
	}
	if err != nil {
		return fmt.Errorf("natsjs: failed to re-drive dead letter %d: %w", seq, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("natsjs: re-drove dead letter %d but failed to delete it: %w", seq, err)
	}
	return nil
}

// DeleteDeadLetter implements [pubsub.Broker].
func (b *Broker) DeleteDeadLetter(ctx context.Context, dl *pubsub.DeadLetter) error {
	s, seq, err := b.deadLetterRef(ctx, dl)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("natsjs: failed to delete dead letter %d: %w", seq, err)
	}
	return nil
}

func (b *Broker) deadLetterRef(ctx context.Context, dl *pubsub.DeadLetter) (jetstream.Stream, uint64, error) {
	if err := b.errIfClosed(); err != nil {
		return nil, 0, err
	}
	seq, err := strconv.ParseUint(dl.Ref, 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("natsjs: dead letter ref %q is not a sequence number", dl.Ref)
	}
	s, err := b.lookupStream(ctx, b.cfg.DeadLetterStream)
	if err != nil {
		return nil, 0, fmt.Errorf("natsjs: failed to open the dead-letter stream: %w", err)
	}
	return s, seq, nil
}
