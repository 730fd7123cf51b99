package natsjs

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// newTestBroker connects a broker with cfg and opts, closed when the test
// ends (if it has not closed it itself).
func newTestBroker(t *testing.T, cfg Config, opts ...Option) *Broker {
	t.Helper()
	b, err := New(t.Context(), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// mustPublish publishes a message to topic through b, failing the test if
// Publish fails.
func mustPublish(t *testing.T, b *Broker, topic string) pubsub.Confirmation {
	t.Helper()
	conf, err := b.Publish(t.Context(), &pubsub.Message{Topic: topic, Header: http.Header{}, Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

// checkWindowEmpty waits until no publish holds room in b's window or
// awaits its ack: every one settled, and freed its room once.
func checkWindowEmpty(t *testing.T, b *Broker) {
	t.Helper()
	pubsubtest.WaitFor(t, "the window to empty", func() bool { return len(b.window) == 0 && b.acks.waiting() == 0 })
	if extra := extraReleases(b); extra != 0 {
		t.Errorf("%d publishes freed their room in the window twice (each blocked on the empty window)", extra)
	}
}

// extraReleases fills b's empty window and empties it again, and returns
// how many more sends than its capacity it took: each went to a publish
// freeing its room a second time, blocked on the empty window.
func extraReleases(b *Broker) int {
	sent := 0
	for full := false; !full; {
		select {
		case b.window <- struct{}{}:
			sent++
		default:
			full = true
		}
	}
	for len(b.window) > 0 {
		<-b.window
	}
	return sent - cap(b.window)
}

// Publishes awaiting their ack at Close (buffered by nats.go while the
// connection is down, or sent just before): each Wait returns, not never
// (the broker's sweep of timed-out publishes ends with Close, and with the
// connection down, or nats.NoCallbacksAfterClientClose, no disconnected
// handler fails them), and with the connection down returns a failure.
func TestCloseFailsPublishesAwaitingTheirAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		down bool // the server gone before the publishes
		opts []nats.Option
	}{
		{name: "connection down", down: true},
		{name: "no callbacks after close"},
		{name: "no callbacks after close, connection down", down: true, opts: []nats.Option{nats.NoCallbacksAfterClientClose()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startTestServer(t, &server.Options{})
			opts := append([]nats.Option{nats.ReconnectWait(20 * time.Millisecond)}, tc.opts...)
			b := newTestBroker(t, Config{URL: srv.ClientURL(), PublishTimeout: time.Hour}, WithNATSOptions(opts...))
			publish := func() pubsub.Confirmation { return mustPublish(t, b, "closing") }
			if err := publish().Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			if tc.down {
				srv.Shutdown()
				pubsubtest.WaitFor(t, "the connection to drop", b.nc.IsReconnecting)
				pubsubtest.WaitFor(t, "the disconnected handler", func() bool { return b.acks.waiting() == 0 })
			}
			var confs []pubsub.Confirmation
			for range 10 {
				confs = append(confs, publish())
			}
			_ = b.Close()
			for i, conf := range confs {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				err := conf.Wait(ctx)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) || (tc.down && err == nil) {
					t.Fatalf("Wait on publish %d made before Close = %v, want its outcome (a failure with the connection down)", i, err)
				}
			}
			checkWindowEmpty(t, b)
		})
	}
}

// A PublishTimeout under 4ns (NATS_PUBLISH_TIMEOUT=1ns) made the sweep's
// ticker of 0, whose panic ended the process, and one under a millisecond
// failed every publish (its stream's lookup has that long): New refuses
// one under 100ms, a typo of "30s".
func TestTinyPublishTimeout(t *testing.T) {
	t.Parallel()
	_, err := New(t.Context(), Config{DataDir: t.TempDir(), PublishTimeout: time.Nanosecond})
	if err == nil || !strings.Contains(err.Error(), "NATS_PUBLISH_TIMEOUT") {
		t.Fatalf("New with a PublishTimeout of 1ns = %v, want an error naming NATS_PUBLISH_TIMEOUT", err)
	}
}

// Acknowledgements that nats.go drops past the reply subscription's
// pending limits (a slow consumer) leave their publishes to time out, as
// nats.go's jetstream did: each Wait returns, a failure for those, and the
// window empties.
func TestAcksDroppedBySlowConsumer(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, Config{DataDir: t.TempDir(), PublishTimeout: time.Second})
	publish := func() pubsub.Confirmation { return mustPublish(t, b, "slow") }
	if err := publish().Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A publish whose settling blocks the reply subscription's handler
	// until unblock is sent to.
	unblock := make(chan struct{})
	blocker := &confirmation{b: &Broker{window: unblock}}
	b.acks.mu.Lock()
	b.acks.pending["blocker"] = blocker
	reply := b.acks.prefix + "blocker"
	b.acks.mu.Unlock()
	if err := b.nc.PublishMsg(&nats.Msg{Subject: "slow", Reply: reply, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the handler to block", func() bool { return b.acks.waiting() == 0 })
	if err := b.acks.sub.SetPendingLimits(5, -1); err != nil {
		t.Fatal(err)
	}
	var confs []pubsub.Confirmation
	for range 20 {
		confs = append(confs, publish())
	}
	pubsubtest.WaitFor(t, "acknowledgements dropped", func() bool { n, _ := b.acks.sub.Dropped(); return n > 0 })
	unblock <- struct{}{}
	timedOut := 0
	for i, conf := range confs {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := conf.Wait(ctx)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
			timedOut++
		case err != nil:
			t.Errorf("Wait on publish %d = %v, want nil or the timeout", i, err)
		}
	}
	dropped, _ := b.acks.sub.Dropped()
	if timedOut != dropped {
		t.Errorf("%d publishes timed out, want the %d whose acknowledgement was dropped", timedOut, dropped)
	}
	checkWindowEmpty(t, b)
}

// Close with the connection up waits for the acknowledgements of the
// publishes in flight before it drains the connection (which unsubscribes
// their replies): each is acknowledged, not failed though stored.
func TestCloseWaitsForAcksInFlight(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{})
	b := newTestBroker(t, Config{URL: srv.ClientURL()})
	var confs []pubsub.Confirmation
	for range 500 {
		confs = append(confs, mustPublish(t, b, "inflight"))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, conf := range confs {
		if err := conf.Wait(t.Context()); err != nil {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d publishes in flight at Close failed, want each acknowledged", failed, len(confs))
	}
	checkWindowEmpty(t, b)
}

// Close with publishes going on refuses the new ones (pubsub.ErrClosed)
// while it waits for the acknowledgements of those in flight: a wait for
// the window to empty that new publishes keep filling ended with its
// timeout, and the drain then failed a window of publishes that the
// server had stored.
func TestCloseRefusesPublishesWhileItWaits(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{})
	b := newTestBroker(t, Config{URL: srv.ClientURL(), PublishWindow: 256})
	if err := mustPublish(t, b, "busy").Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	confs := make(chan pubsub.Confirmation, 1<<20)
	var publishers sync.WaitGroup
	for range 4 {
		publishers.Go(func() {
			for {
				conf, err := b.Publish(t.Context(), &pubsub.Message{Topic: "busy", Header: http.Header{}, Data: []byte("x")})
				if err != nil {
					if !errors.Is(err, pubsub.ErrClosed) {
						t.Errorf("Publish during Close: %v, want pubsub.ErrClosed", err)
					}
					return
				}
				confs <- conf
			}
		})
	}
	pubsubtest.WaitFor(t, "publishes in flight", func() bool { return len(confs) > 1000 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	publishers.Wait()
	close(confs)
	failed, n := map[string]int{}, 0
	for conf := range confs {
		n++
		if err := conf.Wait(t.Context()); err != nil {
			failed[err.Error()]++
		}
	}
	if len(failed) > 0 {
		t.Errorf("of %d publishes made before Close refused them, failed: %v; want each acknowledged", n, failed)
	}
	checkWindowEmpty(t, b)
}

// Publishes made while the connection is down go to nats.go's reconnect
// buffer; past its size nats.go refuses them: those Publish calls fail at
// once, free their room in the window, and the buffered ones are
// acknowledged once the server is back.
func TestPublishesPastTheReconnectBuffer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startTestServer(t, &server.Options{StoreDir: dir})
	port := srv.Addr().(*net.TCPAddr).Port
	// The broker's disconnected handler fails the publishes awaiting their
	// ack when it runs, and nats.go runs it on a goroutine of its own: the
	// publishes below must come after it, or it may fail some of them.
	handled := make(chan struct{}, 1)
	onDisconnect := nats.DisconnectErrHandler(func(*nats.Conn, error) {
		select {
		case handled <- struct{}{}:
		default:
		}
	})
	b := newTestBroker(t, Config{URL: srv.ClientURL()}, WithNATSOptions(nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(4096), onDisconnect))
	publish := func() (pubsub.Confirmation, error) {
		return b.Publish(t.Context(), &pubsub.Message{Topic: "buffered", Header: http.Header{}, Data: make([]byte, 200)})
	}
	if conf, err := publish(); err != nil || conf.Wait(t.Context()) != nil {
		t.Fatal("the first publish failed")
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	pubsubtest.WaitFor(t, "the connection to drop", b.nc.IsReconnecting)
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the disconnected handler did not run within 10s")
	}
	var confs []pubsub.Confirmation
	refused := 0
	for range 50 {
		conf, err := publish()
		if err != nil {
			if !errors.Is(err, nats.ErrReconnectBufExceeded) {
				t.Fatalf("publish while reconnecting: %v, want the reconnect buffer's error", err)
			}
			refused++
			continue
		}
		confs = append(confs, conf)
	}
	if refused == 0 || len(confs) == 0 {
		t.Fatalf("%d publishes buffered and %d refused, want some of each", len(confs), refused)
	}
	if window, awaiting := len(b.window), b.acks.waiting(); window != len(confs) || awaiting != len(confs) {
		t.Errorf("%d publishes buffered: %d hold room in the window and %d await their ack", len(confs), window, awaiting)
	}
	startTestServer(t, &server.Options{Port: port, StoreDir: dir})
	for i, conf := range confs {
		if err := conf.Wait(t.Context()); err != nil {
			t.Errorf("buffered publish %d: %v", i, err)
		}
	}
	checkWindowEmpty(t, b)
}

// A server that stops reading without closing the connection (a paused
// process, a partition) fills the socket's buffers, and a write then
// blocks, holding the connection's lock: every Publish, whatever its
// context, readiness's status check and Close waited for it, up to
// nats.go's FlusherTimeout of a minute (Close took 57s by hand, through a
// proxy that stopped forwarding, against the README's 20s). The broker
// sets writeTimeout instead, which WithNATSOptions may change.
func TestConnectionWriteTimeout(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{})
	for _, tc := range []struct {
		name string
		opts []Option
		want time.Duration
	}{
		{name: "default", want: writeTimeout},
		{name: "the user's", opts: []Option{WithNATSOptions(nats.FlusherTimeout(time.Hour))}, want: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newTestBroker(t, Config{URL: srv.ClientURL()}, tc.opts...)
			if got := b.nc.Opts.FlusherTimeout; got != tc.want {
				t.Errorf("the connection's writes time out after %v, want %v", got, tc.want)
			}
		})
	}
}
