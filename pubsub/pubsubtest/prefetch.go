package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
// delivered before the eight were acknowledged, come before it. Each copy
// so acknowledged counts in pubsub_late_copies_total, as its warning
// does (a broker that fetches no message ahead of its handlers, as mem,
// delivers no copy there: none is counted).
func testOverdueCopiesNotHandled(t *testing.T, h *harness) {
	const ackWait, messages = time.Second, 8
	var runs handlings
	reg := prometheus.NewRegistry()
	var warnings lateCopyWarnings
	sub := newSubscriber(t, h.broker, "overdue", "s", func(ctx context.Context, m *pingv1.PingRequest) error {
		if m.GetNumber() <= messages {
			time.Sleep(ackWait * 4 / 10)
		}
		runs.add(ctx, m)
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1, Prefetch: messages, AckWait: ackWait}),
		pubsub.WithRegistry(reg), pubsub.WithLogger(slog.New(&warnings)))
	Start(t, sub)
	if n, ok := metricValue(t, reg, "pubsub_late_copies_total", "overdue", "s"); !ok || n != 0 {
		t.Errorf("pubsub_late_copies_total = %v (reported: %v) before any delivery, want 0", n, ok)
	}
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
	// The copies were acknowledged before the last message was handled,
	// by the one handler.
	n, _ := metricValue(t, reg, "pubsub_late_copies_total", "overdue", "s")
	if want := float64(warnings.n.Load()); n != want {
		t.Errorf("pubsub_late_copies_total = %v, want %v: the copies acknowledged without a handler, each warned of", n, want)
	}
}

// lateCopyWarnings is a slog.Handler that counts the warnings that a copy
// of a message handled already was acknowledged without a handler, and
// drops every record. Hand-written: slog has no recording handler, and
// this one needs no more than a count.
type lateCopyWarnings struct{ n atomic.Int64 }

func (w *lateCopyWarnings) Enabled(context.Context, slog.Level) bool { return true }

func (w *lateCopyWarnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && strings.Contains(r.Message, "acknowledging the copy") {
		w.n.Add(1)
	}
	return nil
}

func (w *lateCopyWarnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *lateCopyWarnings) WithGroup(string) slog.Handler      { return w }

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

// overlaps counts a handler's runs and the most that ran at once.
type overlaps struct {
	mu                  sync.Mutex
	running, most, runs int
}

// enter counts a run that starts and returns its number, from 1; leave
// counts its end.
func (o *overlaps) enter() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.running++
	o.runs++
	o.most = max(o.most, o.running)
	return o.runs
}

func (o *overlaps) leave() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.running--
}

// counts returns the runs so far and the most that ran at once.
func (o *overlaps) counts() (runs, most int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.runs, o.most
}

// testOverrunRetried: a handler that overruns AckWait (5 × AckWait, its
// context's deadline ignored) and then fails has its message retried and
// handled: the copies given back while it ran (see testOverrunNotRunTwice)
// took no attempt of MaxAttempts (5, the default) from the handler, so the
// message is not dead-lettered after one run as a message that never got a
// verdict.
func testOverrunRetried(t *testing.T, h *harness) {
	const ackWait = 200 * time.Millisecond
	var runs overlaps
	var lastAttempt atomic.Int64
	handled := make(chan struct{})
	sub := newSubscriber(t, h.broker, "overrun-retried", "s", func(ctx context.Context, m *pingv1.PingRequest) error {
		n := runs.enter()
		defer runs.leave()
		info, _ := pubsub.MessageInfoFrom(ctx)
		lastAttempt.Store(int64(info.Attempt))
		if n == 1 {
			time.Sleep(5 * ackWait) // not <-ctx.Done(): the handler overruns
			return errors.New("transient failure after overrunning AckWait")
		}
		if n == 2 {
			close(handled)
		}
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{
		Concurrency: 4,
		AckWait:     ackWait,
		Backoff:     pubsub.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
	}))
	Start(t, sub)
	if err := h.publisher(t, h.broker, "overrun-retried").Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	var dls []*pubsub.DeadLetter
	WaitFor(t, "the message handled again or dead-lettered", func() bool {
		select {
		case <-handled:
			return true
		default:
		}
		dls = deadLetters(t, h.broker, "overrun-retried", "s")
		return len(dls) > 0
	})
	n, most := runs.counts()
	if len(dls) > 0 {
		t.Fatalf("the message was dead-lettered (%s after %d attempts: %s), want it retried: its handler ran %d times",
			dls[0].Reason, dls[0].Attempts, dls[0].Error, n)
	}
	if most != 1 {
		t.Errorf("the message ran %d at once, want 1", most)
	}
	if a := lastAttempt.Load(); a != 2 {
		t.Errorf("the retry's MessageInfo.Attempt = %d, want 2 (the copies given back while the handler ran are not attempts)", a)
	}
}

// testOverrunNotRunTwice: a handler that overruns AckWait (here one that
// ignores its context's deadline, 5 × AckWait) has its message delivered
// again meanwhile; the subscriber does not run it twice at once in one
// process, whatever workers it has free, and once the handler acknowledged
// it the message is not handled again, nor dead-lettered for the attempts
// its copies took. Each copy given back counts in
// pubsub_given_back_total.
func testOverrunNotRunTwice(t *testing.T, h *harness) {
	const ackWait = 200 * time.Millisecond
	var runs overlaps
	reg := prometheus.NewRegistry()
	done := make(chan struct{})
	sub := newSubscriber(t, h.broker, "overrun", "s", func(ctx context.Context, m *pingv1.PingRequest) error {
		first := runs.enter() == 1
		if first {
			time.Sleep(5 * ackWait) // not <-ctx.Done(): the handler overruns
		}
		runs.leave()
		if first {
			close(done)
		}
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 4, AckWait: ackWait}), pubsub.WithRegistry(reg))
	Start(t, sub)
	if n, ok := metricValue(t, reg, "pubsub_given_back_total", "overrun", "s"); !ok || n != 0 {
		t.Errorf("pubsub_given_back_total = %v (reported: %v) before any delivery, want 0", n, ok)
	}
	if err := h.publisher(t, h.broker, "overrun").Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	<-done
	time.Sleep(3 * ackWait) // room for a copy to come, and be handled, after the ack
	if n, most := runs.counts(); most != 1 || n != 1 {
		t.Errorf("a message whose handler overran AckWait 5 times ran %d times, %d at once; want once", n, most)
	}
	if dls := deadLetters(t, h.broker, "overrun", "s"); len(dls) > 0 {
		t.Errorf("%d dead letters, want none: the first %s after %d attempts", len(dls), dls[0].Reason, dls[0].Attempts)
	}
	// The handler overran AckWait 5 times: the broker sent copies while
	// it ran, each given back (a few, as the broker's timers fall).
	if n, _ := metricValue(t, reg, "pubsub_given_back_total", "overrun", "s"); n < 1 {
		t.Errorf("pubsub_given_back_total = %v, want the copies given back while the handler ran (at least 1)", n)
	}
}
