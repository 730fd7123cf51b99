package natsjs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestServerLoggerLevels: a running embedded server's notices (a slow
// consumer) stay info, its warnings and errors keep their levels; only its
// notices while it starts or stops are debug.
func TestServerLoggerLevels(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := &serverLogger{logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Noticef("Slow Consumer Detected: MaxPending of %d Exceeded", 1)
	l.Warnf("warned")
	l.Errorf("failed")
	l.routine.Store(true)
	l.Noticef("Server is ready")
	l.Warnf("warned while starting")
	got := buf.String()
	for _, want := range []string{
		`level=INFO msg="nats-server: Slow Consumer Detected: MaxPending of 1 Exceeded"`,
		`level=WARN msg="nats-server: warned"`,
		`level=ERROR msg="nats-server: failed"`,
		`level=DEBUG msg="nats-server: Server is ready"`,
		`level=WARN msg="nats-server: warned while starting"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log:\n%s\nwant %s", got, want)
		}
	}
}
