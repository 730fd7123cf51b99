package pubsub_test

import (
	"context"
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
