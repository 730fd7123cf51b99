package pubsubtest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
)

// testClosed checks that a closed broker refuses every operation with
// pubsub.ErrClosed, as that error's documentation promises, and a publish
// with pubsub.ErrNotSent too. A broker
// without a Close method has nothing to check.
func testClosed(t *testing.T, h *harness) {
	b := h.backend.Connect(t)
	c, ok := b.(io.Closer)
	if !ok {
		t.Skip("the broker has no Close method")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	want := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, pubsub.ErrClosed) {
			t.Errorf("%s on a closed broker: %v, want pubsub.ErrClosed", op, err)
		}
	}
	ctx := t.Context()
	msg := pubsub.Message{ID: "closed-1", Topic: "closed", Header: http.Header{}}
	dl := &pubsub.DeadLetter{Message: msg, Subscription: "s", Reason: pubsub.ReasonPermanent, Time: time.Now(), Ref: "1"}
	_, err := b.Publish(ctx, &msg)
	want("Publish", err)
	if !errors.Is(err, pubsub.ErrNotSent) {
		t.Errorf("Publish on a closed broker: %v, want pubsub.ErrNotSent too: the message never left", err)
	}
	_, err = b.Subscribe(ctx, pubsub.ConsumerConfig{Topic: "closed", Subscription: "s", AckWait: time.Second, Prefetch: 1}, func(pubsub.Delivery) {})
	want("Subscribe", err)
	want("DeadLetter", b.DeadLetter(ctx, dl))
	err = nil
	for _, e := range b.DeadLetters(ctx, "", "") {
		err = e
		break
	}
	want("DeadLetters", err)
	want("Redrive", b.Redrive(ctx, dl))
	want("DeleteDeadLetter", b.DeleteDeadLetter(ctx, dl))
	want("Check", b.Check(ctx))

	// A subscriber run on it stops at once with the error, rather than
	// retrying a subscription that cannot succeed.
	sub, err := pubsub.NewSubscriber(b, "closed", "s", func(context.Context, *pingv1.PingRequest) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = sub.Run(runCtx)
	want("Subscriber.Run", err)
	if runCtx.Err() != nil {
		t.Errorf("Subscriber.Run returned only when its context ended")
	}
}
