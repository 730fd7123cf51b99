package pubsubtest

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/connectkit/connectkit/pubsub"
)

// testClosed checks that a closed broker refuses every operation with
// pubsub.ErrClosed, as that error's documentation promises. A broker
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
}
