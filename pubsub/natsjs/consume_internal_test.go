package natsjs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connectkit/connectkit/pubsub"
)

// subscribeToTestServer subscribes to a test server standing for an
// external one, and returns the server and the subscription's consumer.
func subscribeToTestServer(t *testing.T) (*server.Server, *consumer) {
	t.Helper()
	srv := startTestServer(t, &server.Options{})
	b, err := New(t.Context(), Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	pc, err := b.Subscribe(t.Context(), pubsub.ConsumerConfig{Topic: "healing", Subscription: "s", AckWait: time.Second, Prefetch: 1}, func(pubsub.Delivery) {})
	if err != nil {
		t.Fatal(err)
	}
	return srv, pc.(*consumer)
}

// While a consumer the server lost is being made again, and cannot be, Err
// says so (the subscriber's Check fails with it); once drained, it says
// nothing.
func TestConsumerErrWhileHealing(t *testing.T) {
	t.Parallel()
	srv, c := subscribeToTestServer(t)
	if err := c.Err(); err != nil {
		t.Fatalf("Err = %v while consuming", err)
	}
	srv.Shutdown() // nothing can be made again now
	c.onError(nil, jetstream.ErrConsumerDeleted)
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "creating it again") {
		t.Errorf("Err = %v while healing, want why nothing is consumed", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_ = c.Drain(ctx)
	if err := c.Err(); err != nil {
		t.Errorf("Err = %v after Drain, want nil", err)
	}
}

// Draining a consumer ends its healing at once, though the broker stays
// open: heal neither finishes its try (up to 30 s while no server answers)
// nor sleeps out its backoff (up to 30 s) first.
func TestDrainEndsHealing(t *testing.T) {
	t.Parallel()
	srv, c := subscribeToTestServer(t)
	srv.Shutdown() // no server answers: heal's try waits
	c.onError(nil, jetstream.ErrConsumerDeleted)
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_ = c.Drain(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		healing := c.healing
		c.mu.Unlock()
		if !healing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("heal still runs 5s after Drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
