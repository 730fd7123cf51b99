package natsjs

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestFirstAttemptAfterItsContext: nats.Connect makes the first try of the
// servers before it returns, without New's context. When that context
// ended meanwhile, firstAttempt fails with it even though the walk's
// outcome waits too, where a select picks either at random (New then
// returned a broker connecting in the background, once in ten runs of
// TestStartBoundedByItsContext with -race on a loaded machine).
func TestFirstAttemptAfterItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 64 { // a coin flip each, without the check
		b := &Broker{cfg: Config{URL: "nats://nats:4222"}, logger: slog.New(slog.DiscardHandler),
			firstErr: make(chan error, 1), connected: make(chan struct{})}
		b.firstErr <- nats.ErrNoServers
		background, err := b.firstAttempt(ctx)
		if background || !errors.Is(err, context.Canceled) {
			t.Fatalf("firstAttempt with its context done and the walk's error waiting = %v, %v; want the context's error", background, err)
		}
	}
}
