package natsjs

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connectkit/connectkit/pubsub"
)

// subscribedBroker returns a broker connected to srv, made with opts, and
// a consumption of it, running.
func subscribedBroker(t *testing.T, srv *server.Server, opts ...Option) (*Broker, *consumer) {
	t.Helper()
	b, err := New(t.Context(), Config{URL: srv.ClientURL()}, opts...)
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

// consumption returns the consumption that c reads.
func consumption(c *consumer) jetstream.ConsumeContext {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cc
}

// debugLogs is a logger option writing every line, debug up, to logs.
func debugLogs(logs *lockedBuffer) Option {
	return WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
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
	before := consumption(c)
	b.acks.close() // Close's first step, before it drains the connection
	c.reconnected()
	if consumption(c) != before {
		t.Error("the consumption was replaced on the connection that Close is about to drain")
	}
}

// A consumer check (checkExists, run when no server answers the pull
// requests) that found the consumer created anew by another instance
// while Close ran logged "natsjs: consumer deleted or lost; creating it
// again" at error and set about creating it again on the connection that
// Close drains: its path, unlike a consumer found gone, did not go
// through onError's check that Close began. The consumer here is made to
// look created again (the time the consumption read it from is moved),
// and the check runs against the real server once Close has marked the
// broker closing: it logs at debug and leaves the consumption as it is.
func TestConsumerCheckRacingCloseDoesNotHeal(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{Port: -1})
	var logs lockedBuffer
	b, c := subscribedBroker(t, srv, debugLogs(&logs))
	c.mu.Lock()
	c.created = c.created.Add(-time.Second)
	before, gen := c.cc, c.gen.Load()
	c.mu.Unlock()
	b.acks.close() // Close's first step, before it drains the connection
	c.checking.Store(true)
	c.checkExists()
	c.mu.Lock()
	after, healing := c.cc, c.healing
	c.mu.Unlock()
	if after != before || healing || c.gen.Load() != gen {
		t.Errorf("the consumer is being created again on the connection that Close is about to drain (healing %v, generation %d, was %d)", healing, c.gen.Load(), gen)
	}
	got := logs.String()
	if strings.Contains(got, `"level":"ERROR"`) || !strings.Contains(got, `"level":"DEBUG","msg":"natsjs: consumer deleted or lost while closing"`) {
		t.Errorf("want no error and a debug line for the consumer found created again while closing\nlogs:\n%s", got)
	}
}

// A heal under way when Close began (waiting out healDelay, or between
// retries) created the consumer again on the connection that Close
// drains: it stops instead.
func TestHealRacingCloseDoesNotCreateAgain(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{Port: -1})
	var logs lockedBuffer
	b, c := subscribedBroker(t, srv, debugLogs(&logs))
	c.mu.Lock()
	before := c.cc
	c.healing = true // as beginHeal leaves it
	c.mu.Unlock()
	b.acks.close() // Close's first step, before it drains the connection
	c.heal()
	if consumption(c) != before {
		t.Error("heal consumed again on the connection that Close is about to drain")
	}
	if got := logs.String(); strings.Contains(got, "created again") {
		t.Errorf("heal created the consumer again after Close began\nlogs:\n%s", got)
	}
}
