package pubsub_test

import (
	"testing"

	"github.com/connectkit/connectkit/internal/testenv"
)

// TestMain keeps the OTEL_*, KIT_* and NATS_* variables of the shell that
// runs the tests out of them (see package testenv).
func TestMain(m *testing.M) { testenv.Main(m) }

// TestExamplesIgnoreTheEnvironment runs the Examples again in a process
// whose environment holds what a developer's shell may: they print the
// same.
func TestExamplesIgnoreTheEnvironment(t *testing.T) {
	t.Parallel()
	testenv.CheckIsolated(t, "^Example")
}
