package natsjs_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// consumerNames lists the consumers of topic's stream, as b's server holds
// them.
func consumerNames(tb testing.TB, b *natsjs.Broker, topic string) []string {
	tb.Helper()
	ctx := context.Background()
	name, err := b.JetStream().StreamNameBySubject(ctx, topic)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := b.JetStream().Stream(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	lister := s.ConsumerNames(ctx)
	for n := range lister.Name() {
		names = append(names, n)
	}
	if err := lister.Err(); err != nil {
		tb.Fatal(err)
	}
	return names
}

// startReplay starts a replaying subscriber of topic on a broker of its
// own, connected to owner's server, and returns the broker and the
// subscriber's stop.
func startReplay(t *testing.T, owner *natsjs.Broker, topic string) (*natsjs.Broker, func()) {
	t.Helper()
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: owner.ClientURL(), ReplayInactiveThreshold: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	sub, err := pubsub.NewSubscriber(b, topic, "search", func(context.Context, *pingv1.PingRequest) error { return nil }, pubsub.WithReplay())
	if err != nil {
		t.Fatal(err)
	}
	stop := pubsubtest.Start(t, sub)
	names := consumerNames(t, owner, topic)
	if len(names) != 1 || !strings.HasPrefix(names[0], "search_replay_") {
		t.Fatalf("consumers of the running replay: %q, want one named search_replay_…", names)
	}
	// The server's default for a consumer without a durable name is 5s.
	name, err := owner.JetStream().StreamNameBySubject(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := owner.JetStream().Consumer(t.Context(), name, names[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.InactiveThreshold; got != time.Second {
		t.Errorf("the replay's consumer has InactiveThreshold %v, want ReplayInactiveThreshold (1s)", got)
	}
	return b, stop
}

// TestReplayConsumerGone: a replaying subscription's consumer is deleted
// when its subscriber stops, and by the server once its process is gone
// without a word (a crash), after ReplayInactiveThreshold.
func TestReplayConsumerGone(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t)

	_, stop := startReplay(t, owner, "replay.stopped")
	stop()
	if names := consumerNames(t, owner, "replay.stopped"); len(names) != 0 {
		t.Errorf("consumers after the subscriber stopped: %q, want none", names)
	}

	crashed, _ := startReplay(t, owner, "replay.crashed")
	crashed.Conn().Close() // the process is gone: nothing pulls, nothing deletes
	pubsubtest.WaitFor(t, "the server to delete the crashed instance's consumer", func() bool {
		return len(consumerNames(t, owner, "replay.crashed")) == 0
	})
}

// publisherOf returns a function that publishes an empty PingRequest with
// the given message id to topic on b.
func publisherOf(t *testing.T, b *natsjs.Broker, topic string) func(id string) {
	t.Helper()
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, topic)
	if err != nil {
		t.Fatal(err)
	}
	return func(id string) {
		t.Helper()
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID(id)); err != nil {
			t.Fatal(err)
		}
	}
}

// deleteConsumer deletes the one consumer of topic's stream on b, as the
// server deletes a replay's consumer inactive for ReplayInactiveThreshold.
func deleteConsumer(t *testing.T, b *natsjs.Broker, topic string) {
	t.Helper()
	stream, err := b.JetStream().StreamNameBySubject(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	names := consumerNames(t, b, topic)
	if len(names) != 1 {
		t.Fatalf("consumers of %s: %q, want one", topic, names)
	}
	if err := b.JetStream().DeleteConsumer(t.Context(), stream, names[0]); err != nil {
		t.Fatal(err)
	}
}

// TestReplayResumesWhenMadeAgain: a replay's consumer deleted while it runs
// (as the server deletes one inactive for ReplayInactiveThreshold while
// the connection is down) is made again where it was: the handlers do not
// see the messages handled before again.
func TestReplayResumesWhenMadeAgain(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	const topic = "replay.healed"
	publish := publisherOf(t, b, topic)
	ids := []string{"m-0", "m-1", "m-2", "m-3", "m-4"}
	for _, id := range ids {
		publish(id)
	}
	var mu sync.Mutex
	handled := map[string]int{}
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return handled[id]
	}
	sub, err := pubsub.NewSubscriber(b, topic, "search", func(ctx context.Context, _ *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		mu.Lock()
		defer mu.Unlock()
		handled[info.ID]++
		return nil
	}, pubsub.WithReplay(), pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1})) // in the topic's order
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	deleteConsumer(t, b, topic)
	pubsubtest.WaitFor(t, "the consumer to be made again", func() bool { return len(consumerNames(t, b, topic)) == 1 })
	publish("after")
	pubsubtest.WaitFor(t, "the message published after", func() bool { return count("after") == 1 })
	for _, id := range ids {
		if n := count(id); n != 1 {
			t.Errorf("message %s handled %d times, want once", id, n)
		}
	}
}

// TestReplayBacklogOfItsStart: a replay's consumer made again while it
// replays waits for the backlog that the topic held when Run subscribed,
// not for the messages published since: Check passes once those are
// handled, though a message published after the start is still being
// handled.
func TestReplayBacklogOfItsStart(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	const topic = "replay.backlog"
	publish := publisherOf(t, b, topic)
	for _, id := range []string{"m-0", "m-1", "m-2", "m-3", "m-4"} {
		publish(id)
	}
	gate, hold := make(chan struct{}), make(chan struct{})
	entered := make(chan struct{}, 1)
	sub, err := pubsub.NewSubscriber(b, topic, "search", func(ctx context.Context, _ *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		switch info.ID {
		case "m-2": // the replay is under way
			select {
			case entered <- struct{}{}:
			default:
			}
			<-gate
		case "late": // published after the start: handled after
			<-hold
		}
		return nil
	}, pubsub.WithReplay(), pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1}))
	if err != nil {
		t.Fatal(err)
	}
	// Not pubsubtest.Start, which waits for Check to pass.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		close(hold)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	<-entered
	publish("late")
	deleteConsumer(t, b, topic)
	close(gate) // the consumer is made again once the deliveries waiting for the handler return
	pubsubtest.WaitFor(t, "the consumer to be made again", func() bool { return len(consumerNames(t, b, topic)) == 1 })
	pubsubtest.WaitFor(t, "Check to pass with m-0..m-4 handled and 'late' in its handler", func() bool {
		return sub.Check(t.Context()) == nil
	})
}
