package mem_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	pubsubtest.Run(t, pubsubtest.Features{System: "mem"}, func(tb testing.TB) pubsubtest.Backend {
		b := mem.New()
		tb.Cleanup(func() { _ = b.Close() })
		return pubsubtest.Backend{Connect: func(testing.TB) pubsub.Broker { return b }}
	})
}

// TestPublishDropsOriginalTime: a message handed to Broker.Publish, not
// through a pubsub.Publisher, does not carry a HeaderOriginalTime to its
// subscribers either: only a re-drive does (see pubsub.MessageInfo.Time).
func TestPublishDropsOriginalTime(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	got := make(chan pubsub.Delivery, 1)
	c, err := b.Subscribe(t.Context(), pubsub.ConsumerConfig{Topic: "t", Subscription: "s"}, func(d pubsub.Delivery) { got <- d })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	msg := &pubsub.Message{ID: "m", Topic: "t", Header: http.Header{pubsub.HeaderOriginalTime: {"2001-02-03T04:05:06Z"}}, Data: []byte{}}
	if _, err := b.Publish(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	d := <-got
	if h := d.Message().Header.Get(pubsub.HeaderOriginalTime); h != "" {
		t.Errorf("delivered %s = %q, want none", pubsub.HeaderOriginalTime, h)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
}
