package pubsubtest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
)

// replayed starts a replaying subscriber of topic on b that records into
// rec, failing as fail says, and returns once its Check passes: once it
// handled the backlog of its start.
func replayed(tb testing.TB, b pubsub.Broker, topic string, rec *recorder, fail func(*pingv1.PingRequest, pubsub.MessageInfo) error, opts ...pubsub.Option) (stop func()) {
	tb.Helper()
	opts = append([]pubsub.Option{pubsub.WithReplay(), pubsub.WithDelivery(testDelivery())}, opts...)
	return Start(tb, newSubscriber(tb, b, topic, "search", rec.handler(fail), opts...))
}

// handledOnce fails the test unless rec handled each of ids, once and at
// its first attempt, and nothing else.
func handledOnce(tb testing.TB, who string, rec *recorder, ids []string) {
	tb.Helper()
	if got := rec.succeeded(); got != len(ids) {
		tb.Errorf("%s handled %d messages, want %d", who, got, len(ids))
	}
	for _, id := range ids {
		if calls := rec.callsOf(id); len(calls) != 1 || calls[0].info.Attempt != 1 {
			tb.Errorf("%s: message %s handled %d times (attempts %v), want once at attempt 1", who, id, len(calls), attempts(calls))
		}
	}
}

func attempts(calls []call) []int {
	var out []int
	for _, c := range calls {
		out = append(out, c.info.Attempt)
	}
	return out
}

// testReplayEveryInstance: two instances of one replaying subscription each
// receive every message, those the topic held at their start and those
// published since, and each is ready only once it handled the former.
func testReplayEveryInstance(t *testing.T, h *harness) {
	const n = 20
	pub := h.publisher(t, h.broker, "replayed")
	before := publishMany(t, pub, n)
	recs := [2]*recorder{newRecorder(), newRecorder()}
	for i, b := range []pubsub.Broker{h.broker, h.backend.Connect(t)} {
		replayed(t, b, "replayed", recs[i], nil)
		// Ready: the backlog of its start is handled, all of it.
		handledOnce(t, fmt.Sprintf("instance %d, when ready,", i), recs[i], before)
	}
	var after []string
	for i := range n {
		id := fmt.Sprintf("after-%d", i)
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: int64(i)}, pubsub.WithMessageID(id)); err != nil {
			t.Fatal(err)
		}
		after = append(after, id)
	}
	for i, rec := range recs {
		WaitFor(t, fmt.Sprintf("instance %d to handle %d messages", i, 2*n), func() bool { return rec.succeeded() == 2*n })
		handledOnce(t, fmt.Sprintf("instance %d", i), rec, append(before, after...))
	}
}

// testReplayAfterRestart: an instance started again receives the topic's
// messages again, those that a durable subscription of the topic
// acknowledged too.
func testReplayAfterRestart(t *testing.T, h *harness) {
	const n = 20
	audit := newRecorder()
	Start(t, newSubscriber(t, h.broker, "restarted", "audit", audit.handler(nil), pubsub.WithDelivery(testDelivery())))
	first := newRecorder()
	stop := replayed(t, h.backend.Connect(t), "restarted", first, nil)
	ids := publishMany(t, h.publisher(t, h.broker, "restarted"), n)
	WaitFor(t, "both subscriptions to handle every message", func() bool { return first.succeeded() == n && audit.succeeded() == n })
	stop()

	again := newRecorder()
	replayed(t, h.backend.Connect(t), "restarted", again, nil)
	handledOnce(t, "the instance started again, when ready,", again, ids)
	handledOnce(t, "the durable subscription", audit, ids)
}

// testReplaySince: WithReplaySince begins with the messages published at
// the given time or later.
func testReplaySince(t *testing.T, h *harness) {
	pub := h.publisher(t, h.broker, "since")
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("old")); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("new")); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	replayed(t, h.backend.Connect(t), "since", rec, nil, pubsub.WithReplaySince(since))
	handledOnce(t, "the replay since the second publish, when ready,", rec, []string{"new"})
}

// testReplayFailures: a replaying subscription retries a failed message in
// place and gives up on it as a durable one would, but stores no dead
// letter; it is ready once every message of its start had its verdict.
func testReplayFailures(t *testing.T, h *harness) {
	pub := h.publisher(t, h.broker, "replayfail")
	for _, id := range []string{"ok-1", "failing", "permanent", "ok-2"} {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID(id)); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder()
	cfg := testDelivery()
	cfg.MaxAttempts = 3
	replayed(t, h.backend.Connect(t), "replayfail", rec, func(_ *pingv1.PingRequest, info pubsub.MessageInfo) error {
		switch info.ID {
		case "failing":
			return fmt.Errorf("boom %d", info.Attempt)
		case "permanent":
			return pubsub.Permanent(errors.New("never"))
		}
		return nil
	}, pubsub.WithDelivery(cfg))
	if got := attempts(rec.callsOf("failing")); len(got) != 3 {
		t.Errorf("when ready, the failing message was tried at attempts %v, want 1 to 3", got)
	}
	if got := attempts(rec.callsOf("permanent")); len(got) != 1 {
		t.Errorf("when ready, the permanently failing message was tried at attempts %v, want 1", got)
	}
	handledOnce(t, "the replay, when ready,", rec, []string{"ok-1", "ok-2"})
	if dls := deadLetters(t, h.broker, "replayfail", ""); len(dls) != 0 {
		t.Errorf("the replay stored %d dead letters, want none", len(dls))
	}
}

// testReplayNoRedrive: a re-drive goes to the durable subscription that gave
// up on the message, never to a replaying one, of the same name or not.
func testReplayNoRedrive(t *testing.T, h *harness) {
	var fixed atomic.Bool
	durable := newRecorder()
	Start(t, newSubscriber(t, h.broker, "redriven", "search", durable.handler(func(*pingv1.PingRequest, pubsub.MessageInfo) error {
		if !fixed.Load() {
			return pubsub.Permanent(errors.New("not yet"))
		}
		return nil
	})))
	replay := newRecorder()
	one := testDelivery()
	one.Concurrency = 1 // handles in the topic's order
	replayed(t, h.backend.Connect(t), "redriven", replay, nil, pubsub.WithDelivery(one))
	pub := h.publisher(t, h.broker, "redriven")
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("r")); err != nil {
		t.Fatal(err)
	}
	dl := waitDeadLetters(t, h.broker, "redriven", "search", 1)[0]
	fixed.Store(true)
	if err := h.broker.Redrive(t.Context(), dl); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the durable subscription to handle the re-drive", func() bool { return durable.succeeded() == 1 })
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("after")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the replay to handle the message after the re-drive", func() bool { return replay.succeeded() == 2 })
	handledOnce(t, "the replay", replay, []string{"r", "after"})
}
