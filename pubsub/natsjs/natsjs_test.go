package natsjs_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// newEmbedded starts a broker with an embedded server listening on a random
// loopback port, storing in a temporary directory.
func newEmbedded(tb testing.TB) *natsjs.Broker {
	tb.Helper()
	b, err := natsjs.New(context.Background(), natsjs.Config{DataDir: tb.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		tb.Fatalf("natsjs.New: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

// connectTo returns a broker connected to the embedded server of owner.
func connectTo(tb testing.TB, owner *natsjs.Broker) *natsjs.Broker {
	tb.Helper()
	b, err := natsjs.New(context.Background(), natsjs.Config{URL: owner.ClientURL()})
	if err != nil {
		tb.Fatalf("natsjs.New(URL): %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	t.Parallel()
	pubsubtest.Run(t, pubsubtest.Features{System: "nats"}, func(tb testing.TB) pubsubtest.Backend {
		owner := newEmbedded(tb)
		first := true
		return pubsubtest.Backend{Connect: func(tb testing.TB) pubsub.Broker {
			if first {
				first = false
				return owner
			}
			return connectTo(tb, owner)
		}}
	})
}

// TestEmbeddedStartFails: when the embedded server cannot start, New fails
// at once with the server's reason, not after waiting 30s for it.
func TestEmbeddedStartFails(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = taken.Close() })
	for _, tc := range []struct {
		name string
		cfg  natsjs.Config
		want []string
	}{
		{name: "data dir is a file", cfg: natsjs.Config{DataDir: file}, want: []string{file, "not a directory"}},
		{name: "data dir under a file", cfg: natsjs.Config{DataDir: filepath.Join(file, "nats")}, want: []string{file, "not a directory"}},
		{name: "port taken", cfg: natsjs.Config{DataDir: t.TempDir(), Listen: taken.Addr().String()}, want: []string{taken.Addr().String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			b, err := natsjs.New(t.Context(), tc.cfg)
			if err == nil {
				_ = b.Close()
				t.Fatal("New succeeded, want an error")
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("New failed after %v, want at once", took)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New = %v, want an error containing %q", err, want)
				}
			}
		})
	}
}
