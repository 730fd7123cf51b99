// Package testenv keeps the developer's shell out of the tests: the OTEL_*,
// KIT_* and NATS_* variables (and the example's EXAMPLE_API_TOKEN*, and
// the NOTIFY_SOCKET, WATCHDOG_* and LISTEN_* of a shell that systemd
// started, which kit's systemd notifier reads) set in
// the shell that runs go test would otherwise reach kit.New, which reads
// OTEL_* as a program does (OTEL_TRACES_EXPORTER=console writes spans into
// an Example's output), and the ConfigFromEnv of packages kit and natsjs
// (NATS_URL points an Example's broker at a cluster). [Main] unsets them
// before the tests run; a test of what a variable does sets it with
// t.Setenv, or hands a lookup function of its own to the code under test.
package testenv

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// prefixes are those of the variables [Main] unsets.
var prefixes = []string{"OTEL_", "KIT_", "NATS_", "EXAMPLE_API_TOKEN", "NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_"}

// cleared marks the environment of a test process that [Main] cleared,
// which the processes its tests start inherit.
const cleared = "CONNECTKIT_TESTENV_CLEARED"

// Main unsets the variables of the package doc, then runs the tests: call
// it from the TestMain of each package whose tests build a kit.Server or a
// natsjs broker, or read the environment. A test binary that a test runs
// again, with variables of its own (the example's main, given KIT_ADDR),
// keeps them: Main clears the environment of the first process only.
func Main(m *testing.M) {
	if os.Getenv(cleared) == "" {
		Clear()
		os.Setenv(cleared, "1")
	}
	os.Exit(m.Run())
}

// Clear unsets the variables of the package doc.
func Clear() {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				os.Unsetenv(name)
			}
		}
	}
}

// Hostile is an environment that a developer may have in their shell,
// and that changed the outcome of tests and Examples when they read it:
// spans written to standard output, a broker that is not there, a log
// level and a rate limit that do not parse. (OTEL_SDK_DISABLED=true or
// OTEL_TRACES_SAMPLER=always_off would silence the console exporter.)
var Hostile = []string{
	"OTEL_TRACES_EXPORTER=console",
	"OTEL_PROPAGATORS=none",
	"KIT_LOG_LEVEL=loud",
	"KIT_RATE_LIMIT=fast",
	"NATS_URL=nats://127.0.0.1:1",
	"NATS_MAX_AGE=forever",
}

// CheckIsolated runs the tests and Examples of the test binary that match
// pattern (a -test.run pattern) again, in a process of their own whose
// environment adds [Hostile] to this one, and fails t with their output if
// they fail: they must not read the developer's environment. pattern must
// not match t's own name.
func CheckIsolated(t *testing.T, pattern string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+pattern, "-test.count=1")
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, cleared+"=") }), Hostile...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("with %s in the environment, -test.run=%s: %v\n%s", strings.Join(Hostile, " "), pattern, err, out)
	}
}
