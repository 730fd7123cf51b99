package natsjs_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/nats-io/nats.go"
)

// TestDisconnectedAfterClose: nats.go runs the callbacks queued before a
// connection closed after it closed, so the disconnected handler may run
// after Close returned (at once with nats.NoCallbacksAfterClientClose,
// where Close does not wait for the closed handler). The broker's handler,
// called as nats.go's dispatcher would then, logs no "disconnected"
// warning (nothing will reconnect), does not panic, and still calls the
// application's handler.
func TestDisconnectedAfterClose(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t)
	var logs lockedBuffer
	var userCalls atomic.Int32
	b, err := natsjs.New(context.Background(), natsjs.Config{URL: owner.ClientURL()},
		natsjs.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		natsjs.WithNATSOptions(nats.NoCallbacksAfterClientClose(), nats.DisconnectErrHandler(func(*nats.Conn, error) { userCalls.Add(1) })))
	if err != nil {
		t.Fatal(err)
	}
	late := b.Conn().Opts.DisconnectedErrCB // the broker's, wrapping the application's
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	before := userCalls.Load()
	late(b.Conn(), io.EOF)
	if strings.Contains(logs.String(), `"level":"WARN","msg":"natsjs: disconnected"`) {
		t.Errorf("a disconnect reported after Close logged a warning:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"natsjs: disconnected while closing"`) {
		t.Errorf("no debug line for the disconnect reported after Close:\n%s", logs.String())
	}
	if n := userCalls.Load() - before; n != 1 {
		t.Errorf("the application's disconnected handler ran %d times for the late callback, want 1", n)
	}
}

// TestConnectionCallbacksAfterClose: as TestDisconnectedAfterClose, for
// the other connection handlers the broker installs. Called after Close as
// nats.go's dispatcher would call them then, the reconnected handler logs
// no "natsjs: reconnected" and re-pulls nothing, the connected handler of
// a broker that was connecting in the background logs no "natsjs:
// connected", and its reconnect-error handler no "still trying": each
// logs a debug line "... while closing" and still calls the application's
// handler.
func TestConnectionCallbacksAfterClose(t *testing.T) {
	t.Parallel()
	var userCalls atomic.Int32
	count := func(*nats.Conn) { userCalls.Add(1) }
	debug := func(logs *lockedBuffer) natsjs.Option {
		return natsjs.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}

	owner := newEmbedded(t)
	var logs lockedBuffer
	b, err := natsjs.New(context.Background(), natsjs.Config{URL: owner.ClientURL()}, debug(&logs),
		natsjs.WithNATSOptions(nats.NoCallbacksAfterClientClose(), nats.ReconnectHandler(count)))
	if err != nil {
		t.Fatal(err)
	}
	reconnected := b.Conn().Opts.ReconnectedCB // the broker's, wrapping the application's
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// A broker whose connection was being made in the background.
	var lateLogs lockedBuffer
	late, err := natsjs.New(context.Background(), natsjs.Config{URL: "nats://127.0.0.1:" + strconv.Itoa(freePort(t))}, debug(&lateLogs),
		natsjs.WithNATSOptions(nats.ReconnectWait(50*time.Millisecond), nats.ConnectHandler(count),
			nats.ReconnectErrHandler(func(*nats.Conn, error) { userCalls.Add(1) })))
	if err != nil {
		t.Fatal(err)
	}
	connected, reconnectErr := late.Conn().Opts.ConnectedCB, late.Conn().Opts.ReconnectErrCB
	if err := late.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	before := userCalls.Load()
	reconnected(b.Conn())
	reconnectErr(late.Conn(), errors.New("x509: certificate signed by unknown authority"))
	connected(late.Conn())
	time.Sleep(100 * time.Millisecond) // the JetStream check a late connection starts, had it started one

	for _, tc := range []struct {
		logs     *lockedBuffer
		not, say string
	}{
		{&logs, `"msg":"natsjs: reconnected"`, `"level":"DEBUG","msg":"natsjs: reconnected while closing"`},
		{&lateLogs, `"msg":"natsjs: connected"`, `"level":"DEBUG","msg":"natsjs: connected while closing"`},
		{&lateLogs, `still trying`, `"level":"DEBUG","msg":"natsjs: failed to connect while closing"`},
		{&lateLogs, `JetStream is not usable`, ``},
	} {
		if got := tc.logs.String(); strings.Contains(got, tc.not) || !strings.Contains(got, tc.say) {
			t.Errorf("a callback run after Close: want no %s and a line %s\nlogs:\n%s", tc.not, tc.say, got)
		}
	}
	if n := userCalls.Load() - before; n != 3 {
		t.Errorf("the application's reconnected, connected and reconnect-error handlers ran %d times for the late callbacks, want 3", n)
	}
}

// A broker closed while a subscriber still consumes (its application
// closes the broker first, or the subscriber's Run has not returned yet)
// logs the consumption's end at debug: nats.go reports the connection's
// close to the consumption ("nats: connection closed"), which logged
// "natsjs: consumer error" at warn, though nothing went wrong and nothing
// will pull again.
func TestCloseUnderConsumptionDoesNotWarn(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t)
	var logs lockedBuffer
	b, err := natsjs.New(context.Background(), natsjs.Config{URL: owner.ClientURL()},
		natsjs.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := b.Subscribe(t.Context(), pubsub.ConsumerConfig{Topic: "closing", Subscription: "s", AckWait: time.Second, Prefetch: 1},
		func(d pubsub.Delivery) { _ = d.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cons.Close(context.Background()) }()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // nats.go reports it from a goroutine of its own
	if got := logs.String(); strings.Contains(got, `"level":"WARN"`) || strings.Contains(got, `"level":"ERROR"`) {
		t.Errorf("Close under a running consumption logged a warning or an error:\n%s", got)
	}
}
