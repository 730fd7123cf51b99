package natsjs_test

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// TestEmbeddedServerStartIsQuiet: the embedded server's start-up and
// shutdown notices (its banner, version, JetStream limits, "Server is
// ready", "Server Exiting..") are debug lines, and New logs one info line of
// its own saying where the server stores and whether it listens.
func TestEmbeddedServerStartIsQuiet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, listen string
	}{
		{name: "in-process", listen: ""},
		{name: "listening", listen: "127.0.0.1:-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs lockedBuffer
			dir := t.TempDir()
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			b, err := natsjs.New(t.Context(), natsjs.Config{DataDir: dir, Listen: tc.listen}, natsjs.WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}
			wantListen := "in-process only"
			if tc.listen != "" {
				wantListen = b.ClientURL()
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			var ready int
			debug := map[string]bool{}
			for line := range strings.Lines(logs.String()) {
				var rec struct {
					Level, Msg, Store, Listen string
					MaxStorage                int64 `json:"max_storage_bytes"`
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("%v: %s", err, line)
				}
				if rec.Msg == "natsjs: embedded NATS server ready" {
					ready++
					if rec.Level != "INFO" || rec.Store != filepath.Join(dir, "jetstream") || rec.Listen != wantListen || rec.MaxStorage <= 0 {
						t.Errorf("ready line = %s, want INFO, store %s, listen %s, max_storage_bytes", line, filepath.Join(dir, "jetstream"), wantListen)
					}
				}
				if !strings.HasPrefix(rec.Msg, "nats-server: ") {
					continue
				}
				if rec.Level != "DEBUG" {
					t.Errorf("%s, want DEBUG", line)
				}
				debug[rec.Msg] = true
			}
			if ready != 1 {
				t.Errorf("%d ready lines, want 1:\n%s", ready, logs.String())
			}
			for _, msg := range []string{"nats-server: Starting nats-server", "nats-server: Server is ready", "nats-server: Server Exiting.."} {
				if !debug[msg] {
					t.Errorf("no %q line at debug:\n%s", msg, logs.String())
				}
			}
		})
	}
}
