package natsjs

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Publish takes room in the window of unconfirmed publishes, or waits for
// it until its context is done or the broker closed; a confirmation that
// came answers Wait whatever Wait's context. A publish refused so, or by
// Close before it was sent, wraps pubsub.ErrNotSent beside its cause: its
// message never left the process (they carried only ErrClosed or the
// context's error, which a publish whose ack Close stopped waiting for
// carries too).
func TestPublishWindow(t *testing.T) {
	t.Parallel()
	b, err := New(t.Context(), Config{DataDir: t.TempDir(), PublishWindow: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	publish := func(ctx context.Context) (pubsub.Confirmation, error) {
		return b.Publish(ctx, &pubsub.Message{Topic: "window", Header: http.Header{}, Data: []byte("x")})
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	for range 10 {
		conf, err := publish(t.Context())
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		pubsubtest.WaitFor(t, "the confirmation", func() bool { return b.acks.waiting() == 0 })
		if err := conf.Wait(done); err != nil {
			t.Fatalf("Wait on a confirmed publish, its context done = %v, want nil", err)
		}
	}

	b.acks.close() // as Close begins: refused before it is sent
	if _, err := publish(t.Context()); !errors.Is(err, pubsub.ErrClosed) || !errors.Is(err, pubsub.ErrNotSent) {
		t.Errorf("publish refused as Close began = %v, want ErrClosed and ErrNotSent", err)
	}
	if len(b.window) != 0 {
		t.Fatalf("the refused publish left %d publishes in the window", len(b.window))
	}

	b.window <- struct{}{} // an unconfirmed publish fills the window
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := publish(ctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, pubsub.ErrNotSent) {
		t.Errorf("publish into a full window = %v, want its context's error and ErrNotSent", err)
	}
	closed := make(chan error, 1)
	go func() {
		_, err := publish(context.Background())
		closed <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if !errors.Is(err, pubsub.ErrClosed) || !errors.Is(err, pubsub.ErrNotSent) {
			t.Errorf("publish waiting for room when the broker closed = %v, want ErrClosed and ErrNotSent", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish still waits for room after the broker closed")
	}
	if _, err := publish(t.Context()); !errors.Is(err, pubsub.ErrClosed) || !errors.Is(err, pubsub.ErrNotSent) {
		t.Errorf("publish after Close = %v, want ErrClosed and ErrNotSent", err)
	}
}

// TestRefusedUnwritten: only the errors nats.go's publish returns before it
// writes a message to the connection's buffer say that the message did not
// leave; a write error may come from a flush that sent it.
func TestRefusedUnwritten(t *testing.T) {
	t.Parallel()
	for _, err := range []error{nats.ErrConnectionClosed, nats.ErrConnectionDraining, nats.ErrMaxPayload, nats.ErrReconnectBufExceeded} {
		if !refusedUnwritten(err) {
			t.Errorf("refusedUnwritten(%v) = false, want true", err)
		}
	}
	for _, err := range []error{&net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, os.ErrDeadlineExceeded, nats.ErrTimeout} {
		if refusedUnwritten(err) {
			t.Errorf("refusedUnwritten(%v) = true, want false: the message may have been sent", err)
		}
	}
}

// TestForgetStreamsKeepsTheDelayOfLostOnes checks what a reconnect does to
// the streams a broker set up: every one is looked up again, and one lost
// just before is still not created again within healDelay (a reconnect
// cleared that, so a stream deleted a moment before a reconnect could be
// made again at once, and lose its directory to the server's late move of
// the deleted one's files). It runs the broker's reconnect handler, not
// forgetStreams alone: the handler is what must call it.
func TestForgetStreamsKeepsTheDelayOfLostOnes(t *testing.T) {
	t.Parallel()
	b := &Broker{logger: slog.New(slog.DiscardHandler)}
	var no nats.Options
	if err := b.handlers(&no); err != nil {
		t.Fatal(err)
	}
	ready := &streamState{}
	ready.once.state.Store(1) // done
	b.streams.Store("ready", ready)
	b.streamLost("lost")
	st, _ := b.streams.Load("lost")
	notBefore := st.(*streamState).notBefore

	no.ReconnectedCB(nil) // nats.go's Conn methods it calls take a nil one
	if b.streamReady("ready") {
		t.Error("a stream set up before the reconnect is still taken as ready")
	}
	st, ok := b.streams.Load("lost")
	if !ok {
		t.Fatal("the reconnect forgot that the stream was lost: it may be created again at once")
	}
	if got := st.(*streamState).notBefore; !got.Equal(notBefore) {
		t.Errorf("the lost stream may be created again at %v after the reconnect, want %v", got, notBefore)
	}
}

// An asynchronous publish that an application makes through
// Broker.JetStream leaves the window of pubsub's publishes alone: its
// acknowledgement must not take the room of a pubsub publish still
// unconfirmed (nor, with none, block nats.go's acknowledgement handling
// until one comes).
func TestJetStreamPublishesLeaveTheWindow(t *testing.T) {
	t.Parallel()
	b, err := New(t.Context(), Config{DataDir: t.TempDir(), PublishWindow: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if _, err := b.Publish(t.Context(), &pubsub.Message{Topic: "own", Header: http.Header{}, Data: []byte("x")}); err != nil {
		t.Fatal(err) // creates the stream
	}
	pubsubtest.WaitFor(t, "the confirmation", func() bool { return len(b.window) == 0 })
	b.window <- struct{}{} // a pubsub publish awaiting its ack
	js := b.JetStream()
	for i := range 2 {
		// nats.go hands one acknowledgement at a time to the handlers:
		// the second comes once the first's handlers returned.
		paf, err := js.PublishAsync("own", []byte("y"))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-paf.Ok():
		case err := <-paf.Err():
			t.Fatalf("publish %d through JetStream: %v", i, err)
		case <-t.Context().Done():
			t.Fatalf("publish %d through JetStream: no acknowledgement", i)
		}
	}
	if got := len(b.window); got != 1 {
		t.Errorf("after two publishes through JetStream the window holds %d unconfirmed publishes, want the 1 of pubsub's", got)
	}
}

// TestMessageOverTheFileStoresLimit: a message that a server's max_payload
// lets through but its file store's record limit (32 MiB) refuses
// (JetStream's generic store failure 10077, "message too large") fails
// with ResourceExhausted, not with Unavailable, which invited a retry
// that fails alike.
func TestMessageOverTheFileStoresLimit(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{MaxPayload: 40 << 20})
	b, err := New(t.Context(), Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "big", pubsub.WithoutValidation()) // its rules cap Text at 1 MiB
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), &pingv1.PingRequest{Text: strings.Repeat("x", 33<<20)})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "message too large") {
		t.Errorf("Publish over the file store's limit = %.300v, want resource_exhausted", err)
	}
}
