package natsjs

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// checkWindowEmpty waits until no publish holds room in b's window or
// awaits its ack: every one settled, and freed its room once.
func checkWindowEmpty(t *testing.T, b *Broker) {
	t.Helper()
	pubsubtest.WaitFor(t, "the window to empty", func() bool { return len(b.window) == 0 && b.acks.waiting() == 0 })
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
			b, err := New(t.Context(), Config{URL: srv.ClientURL(), PublishTimeout: time.Hour}, WithNATSOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			publish := func() pubsub.Confirmation {
				conf, err := b.Publish(t.Context(), &pubsub.Message{Topic: "closing", Header: http.Header{}, Data: []byte("x")})
				if err != nil {
					t.Fatal(err)
				}
				return conf
			}
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

// A PublishTimeout under 4ns (NATS_PUBLISH_TIMEOUT=1ns passes Validate)
// made the sweep's ticker of 0, whose panic ended the process.
func TestTinyPublishTimeout(t *testing.T) {
	t.Parallel()
	b, err := New(t.Context(), Config{DataDir: t.TempDir(), PublishTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	// The stream's setup, within PublishTimeout too, fails, or the publish
	// times out or is acknowledged: any is right.
	if conf, err := b.Publish(t.Context(), &pubsub.Message{Topic: "tiny", Header: http.Header{}, Data: []byte("x")}); err == nil {
		_ = conf.Wait(t.Context())
	}
	checkWindowEmpty(t, b)
}
