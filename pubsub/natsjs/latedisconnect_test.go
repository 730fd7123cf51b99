package natsjs_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

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
