package pubsubtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
)

// handlings records each handling of a message: its number and attempt.
type handlings struct {
	mu   sync.Mutex
	runs []string // "number/attempt", in the order the handlers returned
}

func (h *handlings) add(ctx context.Context, m *pingv1.PingRequest) {
	info, _ := pubsub.MessageInfoFrom(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs = append(h.runs, fmt.Sprintf("%d/%d", m.GetNumber(), info.Attempt))
}

func (h *handlings) has(run string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.runs, run)
}

func (h *handlings) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.runs)
}

// testWaitedGetsFullAckWait: a message that waited among the fetched ones
// for a busy handler gets the whole AckWait for its handling, counted from
// when a handler starts it. A broker counts AckWait from the fetch: the
// second message, fetched while the one handler handled the first, had
// waited 0.6 × AckWait when its handler started, so the broker delivered it
// again while that handler still ran (a second handling, attempt 2), unless
// the subscriber had the broker restart its AckWait.
//
// The third message is published once the second's handler returned,
// after the broker would have delivered the second again: that delivery
// would come before it to the one handler.
func testWaitedGetsFullAckWait(t *testing.T, h *harness) {
	const ackWait = 2 * time.Second
	var runs handlings
	sub := newSubscriber(t, h.broker, "waited", "s", func(ctx context.Context, m *pingv1.PingRequest) error {
		if info, _ := pubsub.MessageInfoFrom(ctx); m.GetNumber() < 3 && info.Attempt == 1 {
			time.Sleep(ackWait * 6 / 10)
		}
		runs.add(ctx, m)
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1, Prefetch: 2, AckWait: ackWait}))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "waited")
	for n := range int64(2) {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: n + 1}); err != nil {
			t.Fatal(err)
		}
	}
	WaitFor(t, "the second message handled", func() bool { return runs.has("2/1") })
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 3}); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the third message handled", func() bool { return runs.has("3/1") })
	if got, want := runs.all(), []string{"1/1", "2/1", "3/1"}; !slices.Equal(got, want) {
		t.Errorf("handled (number/attempt) %v, want %v", got, want)
	}
}

// testOverdueCopiesNotHandled: messages that wait among the fetched ones
// longer than AckWait (one handler of 0.4 × AckWait, eight fetched at
// once) are delivered again by the broker while they wait; each is
// handled once, at its first attempt, and none is dead-lettered. The
// copies, fetched behind their messages, were each handled again, at
// attempt 2 (and a copy past MaxAttempts would have been dead-lettered
// without a handler ever failing).
//
// A last message is published once the eight were handled: the copies,
// delivered before the eight were acknowledged, come before it.
func testOverdueCopiesNotHandled(t *testing.T, h *harness) {
	const ackWait, messages = time.Second, 8
	var runs handlings
	sub := newSubscriber(t, h.broker, "overdue", "s", func(ctx context.Context, m *pingv1.PingRequest) error {
		if m.GetNumber() <= messages {
			time.Sleep(ackWait * 4 / 10)
		}
		runs.add(ctx, m)
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1, Prefetch: messages, AckWait: ackWait}))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "overdue")
	want := make([]string, 0, messages+1)
	for n := range int64(messages) {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: n + 1}); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%d/1", n+1))
	}
	WaitFor(t, "every message handled", func() bool {
		for _, w := range want {
			if !runs.has(w) {
				return false
			}
		}
		return true
	})
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: messages + 1}); err != nil {
		t.Fatal(err)
	}
	want = append(want, fmt.Sprintf("%d/1", messages+1))
	WaitFor(t, "the last message handled", func() bool { return runs.has(want[messages]) })
	got := runs.all()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("handled (number/attempt) %v, want %v", got, want)
	}
	if dls := deadLetters(t, h.broker, "overdue", "s"); len(dls) > 0 {
		t.Errorf("%d dead letters, want none; the first: %s after %d attempts", len(dls), dls[0].Reason, dls[0].Attempts)
	}
}

// testPrefetchBelowConcurrency: Prefetch does not bound the handlers that
// run at once. A message leaves the broker's buffer when a handler takes
// it, so with Prefetch 1 the subscriber still runs its Concurrency
// handlers together, each holding a message, while the broker fetches
// one at a time.
func testPrefetchBelowConcurrency(t *testing.T, h *harness) {
	const concurrency = 4
	var mu sync.Mutex
	running := 0
	release := make(chan struct{})
	sub := newSubscriber(t, h.broker, "prefetch-one", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		mu.Lock()
		running++
		mu.Unlock()
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: concurrency, Prefetch: 1}))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "prefetch-one")
	for range concurrency {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	WaitFor(t, fmt.Sprintf("%d handlers running at once with Prefetch 1", concurrency), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return running == concurrency
	})
	close(release)
}

// testOverrunNotRunTwice: a handler that overruns AckWait (here one that
// ignores its context's deadline, 5 × AckWait) has its message delivered
// again meanwhile; the subscriber does not run it twice at once in one
// process, whatever workers it has free, and once the handler acknowledged
// it the message is not handled again, nor dead-lettered for the attempts
// its copies took.
func testOverrunNotRunTwice(t *testing.T, h *harness) {
	const ackWait = 200 * time.Millisecond
	var mu sync.Mutex
	running, most, runs := 0, 0, 0
	done := make(chan struct{})
	sub := newSubscriber(t, h.broker, "overrun", "s", func(ctx context.Context, m *pingv1.PingRequest) error {
		mu.Lock()
		running++
		runs++
		most = max(most, running)
		first := runs == 1
		mu.Unlock()
		if first {
			time.Sleep(5 * ackWait) // not <-ctx.Done(): the handler overruns
		}
		mu.Lock()
		running--
		mu.Unlock()
		if first {
			close(done)
		}
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 4, AckWait: ackWait}))
	Start(t, sub)
	if err := h.publisher(t, h.broker, "overrun").Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	<-done
	time.Sleep(3 * ackWait) // room for a copy to come, and be handled, after the ack
	mu.Lock()
	defer mu.Unlock()
	if most != 1 || runs != 1 {
		t.Errorf("a message whose handler overran AckWait 5 times ran %d times, %d at once; want once", runs, most)
	}
	if dls := deadLetters(t, h.broker, "overrun", "s"); len(dls) > 0 {
		t.Errorf("%d dead letters, want none: the first %s after %d attempts", len(dls), dls[0].Reason, dls[0].Attempts)
	}
}
