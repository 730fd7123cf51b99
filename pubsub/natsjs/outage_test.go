package natsjs_test

import (
	"context"
	"errors"
	"testing"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// deadLetterCount counts the dead letters of a topic and subscription.
func deadLetterCount(tb testing.TB, b *natsjs.Broker, topic, subscription string) int {
	tb.Helper()
	n := 0
	for _, err := range b.DeadLetters(context.Background(), topic, subscription) {
		if err != nil {
			tb.Fatalf("DeadLetters: %v", err)
		}
		n++
	}
	return n
}

// TestDeadLetterStreamDeletedIsRecreated: when an operator deletes the
// dead-letter stream, the next dead letter creates it again, instead of
// failing (and being retried) for as long as the process runs.
func TestDeadLetterStreamDeletedIsRecreated(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	sub, err := pubsub.NewSubscriber(b, "dlgone", "s", func(context.Context, *pingv1.PingRequest) error {
		return pubsub.Permanent(errors.New("refused"))
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "dlgone")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the first dead letter", func() bool { return deadLetterCount(t, b, "dlgone", "s") == 1 })
	if err := b.JetStream().DeleteStream(t.Context(), natsjs.DefaultDeadLetterStream); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the dead letter after the stream's deletion", func() bool { return deadLetterCount(t, b, "dlgone", "s") == 1 })
}
