package natsjs

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/connectkit/connectkit/pubsub"
)

// subscribedBroker returns a broker connected to srv, and a consumption
// of it, running.
func subscribedBroker(t *testing.T, srv *server.Server) (*Broker, *consumer) {
	t.Helper()
	b, err := New(t.Context(), Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cons, err := b.Subscribe(t.Context(), pubsub.ConsumerConfig{Topic: "closing", Subscription: "s", AckWait: time.Second, Prefetch: 1},
		func(d pubsub.Delivery) { _ = d.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cons.Close(t.Context()) })
	return b, cons.(*consumer)
}

// A reconnected handler that checked that Close had not begun, and then
// lost the race to it, re-pulled every consumption on a new inbox of the
// connection that Close drains (logging "natsjs: reconnected; pulling
// again on a new inbox" at info, or, once the drain began, "failed to
// consume on a new inbox" at warn: 2 rounds of 40 of a throwaway loop that
// kicked the connection and closed the broker). The consumption is
// replaced here as that handler does once Close has marked the broker
// closing: it stays as it is.
func TestReconnectRacingCloseDoesNotPullAgain(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{Port: -1})
	b, c := subscribedBroker(t, srv)
	c.mu.Lock()
	before := c.cc
	c.mu.Unlock()
	b.acks.close() // Close's first step, before it drains the connection
	c.reconnected()
	c.mu.Lock()
	after := c.cc
	c.mu.Unlock()
	if after != before {
		t.Error("the consumption was replaced on the connection that Close is about to drain")
	}
}
