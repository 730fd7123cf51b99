package pubsub_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// newPingDelivery returns a delivery of an empty PingRequest that records
// its verdicts.
func newPingDelivery(id string) *fuzzDelivery {
	return &fuzzDelivery{
		msg: pubsub.Message{ID: id, Topic: "t", Data: []byte{}, Header: http.Header{
			pubsub.HeaderContentType: {pubsub.ContentTypeProto}, pubsub.HeaderMessageType: {"connectkit.ping.v1.PingRequest"}}},
		verdicts: make(chan string, 1),
	}
}

// wantVerdict fails t unless d gets verdict within 10 seconds.
func wantVerdict(t *testing.T, d *fuzzDelivery, verdict string) {
	t.Helper()
	select {
	case got := <-d.verdicts:
		if got != verdict {
			t.Errorf("message %s: verdict %q, want %q", d.msg.ID, got, verdict)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("message %s: no verdict, want %q", d.msg.ID, verdict)
	}
}

// The hand-off to the handlers: deliver returns once a handler took the
// message, and waits while every handler is busy (the broker's
// back-pressure); once the consumer drained, a message that no handler took
// is handed back (a nak: the handler cannot fail), as is one delivered
// after Run returned; and Run stops every handler, returning as soon as the
// busy ones finish.
func TestDeliverHandsOffAndBack(t *testing.T) {
	t.Parallel()
	b := &fuzzBroker{subscribed: make(chan func(pubsub.Delivery), 1)}
	release := make(chan struct{})
	var handled sync.WaitGroup
	handled.Add(2)
	sub, err := pubsub.NewSubscriber(b, "t", "s", func(context.Context, *pingv1.PingRequest) error {
		handled.Done()
		<-release
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 2, DrainTimeout: 30 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- sub.Run(ctx) }()
	deliver := <-b.subscribed

	busy := []*fuzzDelivery{newPingDelivery("1"), newPingDelivery("2")}
	for _, d := range busy {
		deliver(d)
	}
	handled.Wait()
	waiting := newPingDelivery("3")
	delivered := make(chan struct{})
	go func() { deliver(waiting); close(delivered) }()
	select {
	case <-delivered:
		t.Fatal("deliver returned while every handler was busy")
	case <-time.After(50 * time.Millisecond):
	}

	cancel()
	wantVerdict(t, waiting, "nak")
	<-delivered
	select {
	case err := <-ran:
		t.Fatalf("Run returned (%v) while handlers were busy", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	for _, d := range busy {
		wantVerdict(t, d, "ack")
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return once its handlers finished")
	}

	late := newPingDelivery("4")
	deliver(late)
	wantVerdict(t, late, "nak")
}

// A message that waited for a busy handler, for less than a tenth of
// AckWait, has what is left of AckWait as its handler's deadline: the
// broker counts AckWait from the fetch, and would deliver the message
// again while a handler with the whole AckWait still ran. (With more
// waited, a broker that can restart AckWait does: the conformance test
// WaitedGetsFullAckWait.)
func TestDeadlineCountsTheWait(t *testing.T) {
	t.Parallel()
	const ackWait, wait = time.Minute, time.Second
	b := &fuzzBroker{subscribed: make(chan func(pubsub.Delivery), 1)}
	release := make(chan struct{})
	deadlines := make(chan time.Time, 2)
	sub, err := pubsub.NewSubscriber(b, "t", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		d, _ := ctx.Deadline()
		deadlines <- d
		<-release
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1, AckWait: ackWait}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = sub.Run(ctx) }()
	deliver := <-b.subscribed

	first, second := newPingDelivery("1"), newPingDelivery("2")
	deliver(first)
	<-deadlines
	fetchedAt := make(chan time.Time, 1)
	go func() {
		fetchedAt <- time.Now()
		deliver(second) // waits for the busy handler
	}()
	fetched := <-fetchedAt
	time.Sleep(wait)
	close(release)
	got := <-deadlines
	// The deadline is AckWait after deliver began to wait, which is just
	// after fetched, in the same goroutine (taken there, so that a slow
	// start of that goroutine on a loaded machine does not count); without
	// counting the wait, it was AckWait after the second handler started,
	// wait later.
	if limit := fetched.Add(ackWait + wait/2); got.After(limit) {
		t.Errorf("the deadline of a message that waited %v is %v after its fetch, want at most %v", wait, got.Sub(fetched), ackWait+wait/2)
	}
	wantVerdict(t, first, "ack")
	wantVerdict(t, second, "ack")
}

// TestHandlerOptionsAddUp: a subscriber's own interceptor, given in a
// second WithHandlerOptions after the shared chain's (the README's answer
// to Watermill's per-handler middleware), runs too, inside the shared one.
func TestHandlerOptionsAddUp(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	var mu sync.Mutex
	var order []string
	named := func(name string) connect.Interceptor {
		return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return next(ctx, req)
			}
		})
	}
	shared := []pubsub.Option{pubsub.WithHandlerOptions(connect.WithInterceptors(named("shared")))}
	sub, err := pubsub.NewSubscriber(b, "addup", "s", func(context.Context, *pingv1.PingRequest) error {
		mu.Lock()
		order = append(order, "handler")
		mu.Unlock()
		return nil
	}, append(shared, pubsub.WithHandlerOptions(connect.WithInterceptors(named("own"))))...)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "addup")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the handler", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order, " > "); got != "shared > own > handler" {
		t.Errorf("order = %s, want shared > own > handler", got)
	}
}

// refusingBroker refuses its first subscriptions with the errors of refusals
// (the third waits for release first), then subscribes on the embedded
// broker.
type refusingBroker struct {
	pubsub.Broker
	release chan struct{}

	mu       sync.Mutex
	refusals []error
	calls    int
}

func (b *refusingBroker) Subscribe(ctx context.Context, cfg pubsub.ConsumerConfig, deliver func(pubsub.Delivery)) (pubsub.Consumer, error) {
	b.mu.Lock()
	b.calls++
	calls := b.calls
	var err error
	if len(b.refusals) > 0 {
		err, b.refusals = b.refusals[0], b.refusals[1:]
	}
	b.mu.Unlock()
	if calls == 3 {
		<-b.release
	}
	if err != nil {
		return nil, err
	}
	return b.Broker.Subscribe(ctx, cfg, deliver)
}

// TestSubscribeRefusalsLoggedOncePerCause: a broker that refuses the
// subscription again and again has it logged at error once per cause, then
// at debug, and its recovery at info, while Check reports the refusal.
func TestSubscribeRefusalsLoggedOncePerCause(t *testing.T) {
	t.Parallel()
	causeA := connect.NewError(connect.CodeFailedPrecondition, errors.New("consumer s made outside pubsub"))
	causeB := connect.NewError(connect.CodeUnavailable, errors.New("no responders"))
	b := &refusingBroker{Broker: mem.New(), release: make(chan struct{}), refusals: []error{causeA, causeA, causeA, causeB}}
	var logs syncBuffer
	handled := make(chan struct{}, 1)
	sub, err := pubsub.NewSubscriber(b, "t", "s", func(context.Context, *pingv1.PingRequest) error {
		handled <- struct{}{}
		return nil
	}, pubsub.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	b.release <- struct{}{} // the third attempt: the first two failed with A
	if err := sub.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "made outside pubsub") {
		t.Errorf("Check while refused = %v, want the refusal", err)
	}
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		t.Fatal("message not handled after the subscription recovered")
	}
	// The broker may deliver before Run's subscribe returned.
	pubsubtest.WaitFor(t, "Check to pass", func() bool { return sub.Check(t.Context()) == nil })
	count := func(level, msg string) int {
		return strings.Count(logs.String(), "level="+level+` msg="`+msg)
	}
	if e, d, i := count("ERROR", "pubsub: failed to subscribe"), count("DEBUG", "pubsub: failed to subscribe"), count("INFO", "pubsub: subscribed after failing"); e != 2 || d != 2 || i != 1 {
		t.Errorf("log has %d error, %d debug and %d recovery lines, want 2, 2 and 1:\n%s", e, d, i, logs.String())
	}
	if !strings.Contains(logs.String(), "attempts=5") {
		t.Errorf("log = %s, want the recovery after 5 attempts", logs.String())
	}
}
