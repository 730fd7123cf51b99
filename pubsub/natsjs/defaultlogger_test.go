package natsjs_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/connectkit/connectkit/internal/protoregtest"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// defaultLoggerChild is the variable under which
// TestUnknownEnvIsLoggedByDefault runs its own binary again, in a process
// whose slog.Default it may set.
const defaultLoggerChild = "NATSJS_TEST_DEFAULT_LOGGER_CHILD"

// A broker given no logger warns on slog.Default: it logged to a
// discarding logger, and a misspelt variable went unseen there too.
func TestUnknownEnvIsLoggedByDefault(t *testing.T) {
	if !protoregtest.InChild(t, defaultLoggerChild) {
		return
	}
	var logs lockedBuffer
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, nil)))
	t.Setenv("NATS_DATADIR", "/var/lib/nats")
	cfg, err := natsjs.ConfigFromEnv()
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	cfg.DataDir = t.TempDir()
	b, err := natsjs.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if got := logs.String(); !strings.Contains(got, `"msg":"natsjs: unknown NATS_ variable ignored","variable":"NATS_DATADIR"`) {
		t.Errorf("no warning of NATS_DATADIR on slog.Default; it holds:\n%s", got)
	}
}
