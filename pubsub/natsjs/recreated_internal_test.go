package natsjs

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// Two instances share a subscription; their server comes back without its
// storage. The instance that reconnects first makes the stream and the
// consumer again; the other, reconnecting later, finds them there and has
// no error to tell it that they are new. Its verdict on a message delivered
// before must still be dropped: acknowledging by stream sequence, it would
// take the message the new stream numbers the same, held by the first
// instance, off the consumer's pending ones, and a failure of that one
// would then never be redelivered.
func TestLateInstanceDropsVerdictsAfterConsumerRecreated(t *testing.T) {
	t.Parallel()
	start := func(dir string, port int) *server.Server {
		return startTestServer(t, &server.Options{Port: port, StoreDir: dir})
	}
	first := start(t.TempDir(), -1)
	url := first.ClientURL()
	connect := func(wait time.Duration) *Broker {
		t.Helper()
		b, err := New(t.Context(), Config{URL: url}, WithNATSOptions(nats.ReconnectWait(wait), nats.ReconnectJitter(0, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	early, late := connect(50*time.Millisecond), connect(3*time.Second)
	cc := pubsub.ConsumerConfig{Topic: "recreated", Subscription: "s", AckWait: time.Minute, Prefetch: 1}
	lateGot := make(chan pubsub.Delivery, 10)
	lateConsumer, err := late.Subscribe(t.Context(), cc, func(d pubsub.Delivery) { lateGot <- d })
	if err != nil {
		t.Fatal(err)
	}
	publish := func(b *Broker) {
		t.Helper()
		conf, err := b.Publish(t.Context(), &pubsub.Message{Topic: "recreated", Data: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		if err := conf.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	publish(early)
	old := <-lateGot // stream sequence 1, held by the late instance
	earlyGot := make(chan pubsub.Delivery, 10)
	if _, err := early.Subscribe(t.Context(), cc, func(d pubsub.Delivery) { earlyGot <- d }); err != nil {
		t.Fatal(err)
	}

	port := first.Addr().(*net.TCPAddr).Port
	first.Shutdown()
	first.WaitForShutdown()
	start(t.TempDir(), port) // empty
	pubsubtest.WaitFor(t, "the early instance to make the consumer again", func() bool {
		_, err := early.js.Consumer(t.Context(), "recreated", "s")
		return err == nil
	})
	publish(early)
	var held pubsub.Delivery // the new stream's sequence 1
	select {
	case held = <-earlyGot:
	case <-time.After(10 * time.Second):
		t.Fatal("the message published after the restart did not reach the early instance")
	}
	pending := func() int {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		cons, err := early.js.Consumer(ctx, "recreated", "s")
		if err != nil {
			t.Fatal(err)
		}
		return cons.CachedInfo().NumAckPending
	}
	if n := pending(); n != 1 {
		t.Fatalf("%d messages pending before the stale verdict, want 1", n)
	}
	pubsubtest.WaitFor(t, "the late instance to reconnect", func() bool { return late.nc.IsConnected() })
	// Time to find out, if it can (not a condition to wait for: without a
	// way to find out, it never does).
	for deadline := time.Now().Add(2 * time.Second); lateConsumer.(*consumer).gen.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}

	if err := old.Ack(); !errors.Is(err, errStaleDelivery) {
		t.Errorf("the late instance's Ack of a message delivered before the restart = %v, want %v", err, errStaleDelivery)
	}
	time.Sleep(200 * time.Millisecond)
	if n := pending(); n != 1 {
		t.Errorf("%d messages pending after the late instance's verdict on a message delivered before the restart, want 1 (the early instance's): the stale ack took it", n)
	}
	if err := held.Ack(); err != nil {
		t.Errorf("the early instance's Ack = %v", err)
	}
}

// A server restarted with its storage keeps the consumer: the lookup after
// the reconnect finds the same one, and a verdict on a message delivered
// before is applied, not dropped (which would deliver it again).
func TestVerdictAfterServerRestartKeepsStorage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(port int) *server.Server {
		return startTestServer(t, &server.Options{Port: port, StoreDir: dir})
	}
	first := start(-1)
	var reconnected atomic.Bool
	b, err := New(t.Context(), Config{URL: first.ClientURL()}, WithNATSOptions(nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected.Store(true) })))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	got := make(chan pubsub.Delivery, 10)
	pc, err := b.Subscribe(t.Context(), pubsub.ConsumerConfig{Topic: "kept", Subscription: "s", AckWait: time.Minute, Prefetch: 1}, func(d pubsub.Delivery) { got <- d })
	if err != nil {
		t.Fatal(err)
	}
	conf, err := b.Publish(t.Context(), &pubsub.Message{Topic: "kept", Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if err := conf.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	d := <-got
	port := first.Addr().(*net.TCPAddr).Port
	first.Shutdown()
	first.WaitForShutdown()
	start(port)
	pubsubtest.WaitFor(t, "the reconnect", reconnected.Load)
	pubsubtest.WaitFor(t, "the lookup after it", func() bool { return !pc.(*consumer).checking.Load() })
	if err := d.Ack(); err != nil {
		t.Errorf("Ack after the restart = %v, want nil", err)
	}
}
