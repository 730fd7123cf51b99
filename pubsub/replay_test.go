package pubsub_test

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// noReplayBroker is a broker whose consumers cannot tell whether a replay
// caught up: a driver without replays.
type noReplayBroker struct{ pubsub.Broker }

func (b noReplayBroker) Subscribe(ctx context.Context, cfg pubsub.ConsumerConfig, deliver func(pubsub.Delivery)) (pubsub.Consumer, error) {
	c, err := b.Broker.Subscribe(ctx, cfg, deliver)
	if err != nil {
		return nil, err
	}
	return struct{ pubsub.Consumer }{c}, nil // hides CaughtUp
}

// TestReplayNeedsAReplayer: a replaying subscriber on a broker whose
// consumer has no CaughtUp method fails Run at once, saying so, rather
// than consuming with a readiness that could never pass.
func TestReplayNeedsAReplayer(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	sub, err := pubsub.NewSubscriber(noReplayBroker{b}, "noreplay", "s", func(context.Context, *pingv1.PingRequest) error { return nil }, pubsub.WithReplay())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(t.Context()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cannot tell whether a replay caught up") {
			t.Errorf("Run = %v, want an error saying the broker cannot replay", err)
		}
	case <-time.After(2 * time.Minute): // a hang, not a speed
		t.Fatal("Run kept running on a broker that cannot replay")
	}
	if err := sub.Check(t.Context()); err == nil {
		t.Error("Check after Run failed = nil, want an error")
	}
}

// TestReplayLogsCaughtUp: a replaying subscriber logs when its replay caught
// up, and how long it took, though nothing calls its Check.
func TestReplayLogsCaughtUp(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "logged")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	handled := make(chan struct{}, 1)
	sub, err := pubsub.NewSubscriber(b, "logged", "s", func(context.Context, *pingv1.PingRequest) error {
		handled <- struct{}{}
		return nil
	}, pubsub.WithReplay(), pubsub.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	<-handled
	for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(logs.String(), `"msg":"pubsub: replay caught up"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // a hang, not a speed
			t.Fatalf("no 'replay caught up' line; log: %s", logs.String())
		}
	}
	if !regexp.MustCompile(`"msg":"pubsub: replay caught up".*"duration":\d+`).MatchString(logs.String()) {
		t.Errorf("the 'replay caught up' line says not how long it took: %s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
