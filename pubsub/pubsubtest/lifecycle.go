package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
)

// testRedrive: a re-driven message goes to the subscription that gave it
// up, as a fresh first attempt with its headers and with the original's
// MessageInfo.Time, which its dead letter keeps in HeaderOriginalTime,
// through a second dead letter too.
func testRedrive(t *testing.T, h *harness) {
	var failures atomic.Int32
	failures.Store(2)
	a, b := newRecorder(), newRecorder()
	subA := newSubscriber(t, h.broker, "redrive", "a", a.handler(func(*pingv1.PingRequest, pubsub.MessageInfo) error {
		if failures.Add(-1) >= 0 {
			return pubsub.Permanent(errors.New("not yet"))
		}
		return nil
	}), pubsub.WithDelivery(testDelivery()))
	subB := newSubscriber(t, h.broker, "redrive", "b", b.handler(nil), pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1}))
	Start(t, subA)
	Start(t, subB)
	pub := h.publisher(t, h.broker, "redrive")
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 5}, pubsub.WithMessageID("r-1")); err != nil {
		t.Fatal(err)
	}
	dl := waitDeadLetters(t, h.broker, "redrive", "a", 1)[0]
	original := dl.Message.Header.Get(pubsub.HeaderOriginalTime)
	if at, err := time.Parse(time.RFC3339Nano, original); err != nil || !at.Equal(a.callsOf("r-1")[0].info.Time) {
		t.Errorf("dead letter's %s = %q, want the message's time %v", pubsub.HeaderOriginalTime, original, a.callsOf("r-1")[0].info.Time)
	}
	time.Sleep(10 * time.Millisecond) // a re-drive stored at a later time, whatever the clock's resolution
	if err := h.broker.Redrive(t.Context(), dl); err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	// Given up again: the second dead letter keeps the first time.
	dl = waitDeadLetters(t, h.broker, "redrive", "a", 1)[0]
	if got := dl.Message.Header.Get(pubsub.HeaderOriginalTime); got != original {
		t.Errorf("second dead letter's %s = %q, want the first's %q", pubsub.HeaderOriginalTime, got, original)
	}
	if err := h.broker.Redrive(t.Context(), dl); err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	WaitFor(t, "the re-driven message", func() bool { return a.succeeded() == 1 })
	calls := a.callsOf("r-1")
	last := calls[len(calls)-1]
	if len(calls) != 3 || !last.info.Time.Equal(calls[0].info.Time) || !calls[1].info.Time.Equal(calls[0].info.Time) {
		t.Errorf("re-driven message: %d calls, MessageInfo.Time %v then %v, want 3, the original's %v", len(calls), calls[1].info.Time, last.info.Time, calls[0].info.Time)
	}
	if last.info.Attempt != 1 || last.msg.GetNumber() != 5 {
		t.Errorf("re-driven message: attempt %d, number %d; want attempt 1 (fresh), number 5", last.info.Attempt, last.msg.GetNumber())
	}
	if got := last.info.Header.Get(pubsub.HeaderMessageType); got != "connectkit.ping.v1.PingRequest" {
		t.Errorf("re-driven message's %s header = %q, want the original", pubsub.HeaderMessageType, got)
	}
	if n := len(deadLetters(t, h.broker, "redrive", "a")); n != 0 {
		t.Errorf("%d dead letters left after re-drive, want 0", n)
	}
	// Subscription b handled r-1 once; the re-drive, published before the
	// sentinel, is not for it.
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("sentinel")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the sentinel", func() bool { return b.handled("sentinel") })
	if n := len(b.callsOf("r-1")); n != 1 {
		t.Errorf("subscription b handled r-1 %d times, want 1: the re-drive must reach subscription a only", n)
	}
}

// testForgedOriginalTime: a publish cannot forge when the broker stored
// its message: the HeaderOriginalTime that a publisher's chain sets (as
// a re-drive's would be) is not stored, and MessageInfo.Time is the
// broker's.
func testForgedOriginalTime(t *testing.T, h *harness) {
	forged := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	forge := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set(pubsub.HeaderOriginalTime, forged.Format(time.RFC3339Nano))
			return next(ctx, req)
		}
	})
	rec := newRecorder()
	Start(t, newSubscriber(t, h.broker, "forged", "s", rec.handler(nil), pubsub.WithDelivery(testDelivery())))
	pub := h.publisher(t, h.broker, "forged", pubsub.WithClientOptions(connect.WithInterceptors(forge)))
	before := time.Now()
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("f-1")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the message", func() bool { return rec.handled("f-1") })
	c := rec.callsOf("f-1")[0]
	if got := c.info.Header.Get(pubsub.HeaderOriginalTime); got != "" {
		t.Errorf("handler saw %s = %q, which the publisher's chain set; want it not stored", pubsub.HeaderOriginalTime, got)
	}
	// The broker's clock may be another machine's: a minute either way.
	if c.info.Time.Equal(forged) || c.info.Time.Before(before.Add(-time.Minute)) || c.info.Time.After(c.at.Add(time.Minute)) {
		t.Errorf("MessageInfo.Time = %v, want when the broker stored the message (published at %v), not the forged %v", c.info.Time, before, forged)
	}
}

// testRedriveAll re-drives every dead letter of a subscription whose
// handler still fails, the way an operator re-drives them all: the listing
// holds the dead letters that existed when it began, so each is re-driven
// once, and not the dead letters the re-drives create while it runs.
func testRedriveAll(t *testing.T, h *harness) {
	const n = 5
	sub := newSubscriber(t, h.broker, "redrive-all", "s", newRecorder().handler(func(*pingv1.PingRequest, pubsub.MessageInfo) error {
		return pubsub.Permanent(errors.New("still broken"))
	}), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "redrive-all")
	for i := range n {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitDeadLetters(t, h.broker, "redrive-all", "s", n)
	redriven := 0
	for dl, err := range h.broker.DeadLetters(t.Context(), "redrive-all", "s") {
		if err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		if redriven++; redriven > 2*n {
			break
		}
		if err := h.broker.Redrive(t.Context(), dl); err != nil {
			t.Fatalf("Redrive: %v", err)
		}
		// The message fails again: wait for its new dead letter, so that a
		// listing that is not bounded would meet it.
		waitDeadLetters(t, h.broker, "redrive-all", "s", n)
	}
	if redriven != n {
		t.Errorf("listing %d dead letters while re-driving each yielded %d (the listing stops at %d), want %d", n, redriven, 2*n+1, n)
	}
}

func testSharedSubscription(t *testing.T, h *harness) {
	const n = 100
	rec := newRecorder()
	var handledBy [2]atomic.Int32
	first := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var sawFirst [2]atomic.Bool
	for i, b := range []pubsub.Broker{h.broker, h.backend.Connect(t)} {
		handle := rec.handler(func(*pingv1.PingRequest, pubsub.MessageInfo) error {
			handledBy[i].Add(1)
			if sawFirst[i].CompareAndSwap(false, true) {
				close(first[i])
				// Hold this instance's only handler until the other
				// instance handles a message: proof that they share.
				select {
				case <-first[1-i]:
				case <-time.After(waitTimeout):
					return errors.New("the other instance never got a message")
				}
			}
			return nil
		})
		sub := newSubscriber(t, b, "shared", "workers", handle, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1, Prefetch: 2}))
		Start(t, sub)
	}
	msgs := make([]*pingv1.PingRequest, n)
	for i := range msgs {
		msgs[i] = &pingv1.PingRequest{Number: int64(i)}
	}
	if err := h.publisher(t, h.broker, "shared").PublishBatch(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, fmt.Sprintf("%d messages", n), func() bool { return rec.succeeded() == n })
	for _, id := range rec.ids() {
		if calls := len(rec.callsOf(id)); calls != 1 {
			t.Errorf("message %s handled %d times, want once", id, calls)
		}
	}
	if handledBy[0].Load() == 0 || handledBy[1].Load() == 0 {
		t.Errorf("instances handled %d and %d messages; want both to share the work", handledBy[0].Load(), handledBy[1].Load())
	}
}

func testCrashRedelivers(t *testing.T, h *harness) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var stuck atomic.Int32
	cfg := pubsub.DeliveryConfig{Concurrency: 2, AckWait: 300 * time.Millisecond, DrainTimeout: time.Millisecond}
	crashing := newSubscriber(t, h.broker, "crash", "s", func(context.Context, *pingv1.PingRequest) error {
		stuck.Add(1)
		<-release // a process that dies here never gives a verdict
		return errors.New("released after the test")
	}, pubsub.WithDelivery(cfg))
	stop := Start(t, crashing)
	pub := h.publisher(t, h.broker, "crash")
	for _, id := range []string{"c-1", "c-2"} {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID(id)); err != nil {
			t.Fatal(err)
		}
	}
	WaitFor(t, "both messages in the crashing instance's handlers", func() bool { return stuck.Load() == 2 })
	stop() // returns after DrainTimeout, abandoning its handlers unacknowledged

	rec := newRecorder()
	cfg.DrainTimeout = 0
	next := newSubscriber(t, h.backend.Connect(t), "crash", "s", rec.handler(nil), pubsub.WithDelivery(cfg))
	Start(t, next)
	WaitFor(t, "the unacknowledged messages to reach the new instance", func() bool { return rec.succeeded() == 2 })
	for _, id := range []string{"c-1", "c-2"} {
		calls := rec.callsOf(id)
		if len(calls) == 0 || calls[0].info.Attempt < 2 {
			t.Errorf("message %s: calls %+v, want a redelivery (attempt 2 or more)", id, calls)
		}
	}
}

func testCleanShutdown(t *testing.T, h *harness) {
	const n = 20
	first := newRecorder()
	cfg := pubsub.DeliveryConfig{Concurrency: 4, AckWait: 200 * time.Millisecond}
	sub := newSubscriber(t, h.broker, "clean", "s", first.handler(nil), pubsub.WithDelivery(cfg))
	stop := Start(t, sub)
	pub := h.publisher(t, h.broker, "clean")
	for i := range n {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	WaitFor(t, "the first batch", func() bool { return first.succeeded() == n })
	stop()
	stopped := time.Now()
	// A lost acknowledgement would bring its message back one AckWait
	// after its delivery: let that pass, so the check below can see it.
	WaitFor(t, "an ack wait", func() bool { return time.Since(stopped) > 2*cfg.AckWait })

	second := newRecorder()
	cfg.Concurrency = 1
	next := newSubscriber(t, h.backend.Connect(t), "clean", "s", second.handler(nil), pubsub.WithDelivery(cfg))
	Start(t, next)
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("sentinel")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the sentinel", func() bool { return second.handled("sentinel") })
	if calls := second.callsOf("sentinel"); len(calls) > 1 {
		// At least once: allowed, and seen when the process stalls longer
		// than AckWait before the broker receives the acknowledgement.
		t.Logf("the sentinel was handled %d times, the last at attempt %d (AckWait %v)", len(calls), calls[len(calls)-1].info.Attempt, cfg.AckWait)
	}
	if ids := second.ids(); len(ids) != 1 {
		t.Errorf("after a clean shutdown the next instance handled %v, want only the sentinel", ids)
	}
}

func testRandomFailuresAndRestart(t *testing.T, h *harness) {
	const n = 200
	rec := newRecorder()
	flaky := rec.handler(func(*pingv1.PingRequest, pubsub.MessageInfo) error {
		if rand.IntN(10) < 3 {
			return errors.New("random failure")
		}
		return nil
	})
	cfg := testDelivery()
	cfg.MaxAttempts = -1
	cfg.Backoff = pubsub.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	sub := newSubscriber(t, h.broker, "flaky", "s", flaky, pubsub.WithDelivery(cfg))
	stop := Start(t, sub)
	ids := publishMany(t, h.publisher(t, h.broker, "flaky"), n)
	WaitFor(t, "a third of the messages", func() bool { return rec.succeeded() >= n/3 })
	stop()
	next := newSubscriber(t, h.backend.Connect(t), "flaky", "s", flaky, pubsub.WithDelivery(cfg))
	Start(t, next)
	WaitFor(t, "every message", func() bool { return rec.succeeded() == n })
	handled := rec.ids()
	for _, id := range ids {
		if !slices.Contains(handled, id) {
			t.Errorf("message %s was never handled", id)
		}
	}
}

func testCancelWhileFlowing(t *testing.T, h *harness) {
	const n = 300
	rec := newRecorder()
	cfg := testDelivery()
	cfg.Concurrency = 8
	sub := newSubscriber(t, h.broker, "flow", "s", rec.handler(nil), pubsub.WithDelivery(cfg))
	stop := Start(t, sub)
	pub := h.publisher(t, h.broker, "flow")
	published := make(chan []string, 1)
	go func() { published <- publishMany(t, pub, n) }()
	WaitFor(t, "the flow to start", func() bool { return rec.succeeded() >= 50 })
	stop() // while messages flow in
	next := newSubscriber(t, h.backend.Connect(t), "flow", "s", rec.handler(nil), pubsub.WithDelivery(cfg))
	Start(t, next)
	ids := <-published
	WaitFor(t, "every message", func() bool { return rec.succeeded() == n })
	handled := rec.ids()
	for _, id := range ids {
		if !slices.Contains(handled, id) {
			t.Errorf("message %s was never handled", id)
		}
	}
}

// publishMany publishes n messages asynchronously and returns their ids.
func publishMany(tb testing.TB, pub *pubsub.Publisher[pingv1.PingRequest], n int) []string {
	ids := make([]string, n)
	futures := make([]*pubsub.Future, n)
	for i := range n {
		ids[i] = fmt.Sprintf("m-%d", i)
		futures[i] = pub.PublishAsync(context.Background(), &pingv1.PingRequest{Number: int64(i)}, pubsub.WithMessageID(ids[i]))
	}
	for i, f := range futures {
		if err := f.Wait(context.Background()); err != nil {
			tb.Errorf("publish %s: %v", ids[i], err)
		}
	}
	return ids
}

func testDeduplication(t *testing.T, h *harness) {
	rec := newRecorder()
	sub := newSubscriber(t, h.broker, "dedup", "s", rec.handler(nil), pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1}))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "dedup")
	for _, id := range []string{"order-42", "order-42", "sentinel"} {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Text: id}, pubsub.WithMessageID(id)); err != nil {
			t.Fatalf("Publish(%s): %v", id, err)
		}
	}
	// One handler, messages in order: a stored duplicate would come before
	// the sentinel.
	WaitFor(t, "the sentinel", func() bool { return rec.handled("sentinel") })
	if n := len(rec.callsOf("order-42")); n != 1 {
		t.Errorf("message published twice with id order-42 handled %d times, want 1", n)
	}
}

func testCheck(t *testing.T, h *harness) {
	if err := h.broker.Check(t.Context()); err != nil {
		t.Errorf("broker Check = %v, want nil", err)
	}
	sub := newSubscriber(t, h.broker, "checked", "s", newRecorder().handler(nil))
	if err := sub.Check(t.Context()); err == nil {
		t.Error("Subscriber.Check before Run = nil, want an error")
	}
	stop := Start(t, sub) // waits for Check to pass
	stop()
	if err := sub.Check(t.Context()); err == nil {
		t.Error("Subscriber.Check after Run returned = nil, want an error")
	}
	if err := sub.Run(t.Context()); err == nil {
		t.Error("second Run = nil, want an error")
	}
}
