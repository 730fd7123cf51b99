package natsjs_test

import (
	"context"
	"testing"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// newEmbedded starts a broker with an embedded server listening on a random
// loopback port, storing in a temporary directory.
func newEmbedded(tb testing.TB) *natsjs.Broker {
	tb.Helper()
	b, err := natsjs.New(context.Background(), natsjs.Config{DataDir: tb.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		tb.Fatalf("natsjs.New: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

// connectTo returns a broker connected to the embedded server of owner.
func connectTo(tb testing.TB, owner *natsjs.Broker) *natsjs.Broker {
	tb.Helper()
	b, err := natsjs.New(context.Background(), natsjs.Config{URL: owner.ClientURL()})
	if err != nil {
		tb.Fatalf("natsjs.New(URL): %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	t.Parallel()
	pubsubtest.Run(t, pubsubtest.Features{System: "nats"}, func(tb testing.TB) pubsubtest.Backend {
		owner := newEmbedded(tb)
		first := true
		return pubsubtest.Backend{Connect: func(tb testing.TB) pubsub.Broker {
			if first {
				first = false
				return owner
			}
			return connectTo(tb, owner)
		}}
	})
}
