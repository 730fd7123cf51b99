package pubsub_test

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/protoregtest"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// blockedBuildChild is the variable under which
// TestBlockedValidatorBuildIsLogged runs its own binary again, in a
// process whose protovalidate global validator is not built yet.
const blockedBuildChild = "PUBSUB_TEST_BLOCKED_BUILD_CHILD"

// A NewPublisher of a message type with rules, which builds
// protovalidate's global validator when nothing did before (a process
// without kit.New, or whose chain does not validate), says so in an
// error line when the build waits behind a registration of a proto file
// from another goroutine, naming the cause and the mend, as kit.New does:
// it hung without a word. The registration is held waiting here, behind a
// read of the registry that the test holds, so that the build waits as it
// does in the deadlock, deterministically, and goes on once the read ends.
func TestBlockedValidatorBuildIsLogged(t *testing.T) {
	t.Parallel()
	if !protoregtest.InChild(t, blockedBuildChild) {
		return
	}
	var logs syncBuffer
	checkBlockedBuildLogged(t, &logs, pubsub.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
}

// defaultLoggerChild is blockedBuildChild's for
// TestBlockedValidatorBuildIsLoggedByDefault.
const defaultLoggerChild = "PUBSUB_TEST_DEFAULT_LOGGER_CHILD"

// A NewPublisher given no logger says the same on slog.Default (set in
// its process of its own): it logged to a discarding logger, and its user
// never saw why it hung.
func TestBlockedValidatorBuildIsLoggedByDefault(t *testing.T) {
	t.Parallel()
	if !protoregtest.InChild(t, defaultLoggerChild) {
		return
	}
	var logs syncBuffer
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, nil)))
	checkBlockedBuildLogged(t, &logs)
}

// checkBlockedBuildLogged makes a NewPublisher with opts wait for the
// validator's build, and checks the lines it writes to logs.
func checkBlockedBuildLogged(t *testing.T, logs *syncBuffer, opts ...pubsub.Option) {
	pubsub.SetValidatorBuildWarning(50 * time.Millisecond)
	release := protoregtest.HoldRegistration(t)
	built := make(chan error, 1)
	go func() {
		_, err := pubsub.NewPublisher[pingv1.PingRequest](mem.New(), "validated", opts...)
		built <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "pubsub.NewPublisher: protovalidate's validator is still being built") {
		if time.Now().After(deadline) {
			fmt.Printf("no line after 30 s; logs:\n%s\n", logs.String())
			os.Exit(1) // the registering goroutine hangs: exit without it
		}
		time.Sleep(10 * time.Millisecond)
	}
	line := logs.String()
	for _, want := range []string{`"level":"ERROR"`, "registered in protoregistry", "before NewPublisher", `"topic":"validated"`, `"type":"connectkit.ping.v1.PingRequest"`} {
		if !strings.Contains(line, want) {
			t.Errorf("line %s lacks %q", line, want)
		}
	}
	release()
	if err := <-built; err != nil {
		t.Fatalf("NewPublisher once the registration went through: %v", err)
	}
	after := logs.String()
	if i, j := strings.Index(after, "still being built"), strings.Index(after, "pubsub.NewPublisher: protovalidate's validator is built after all"); j < i {
		t.Errorf("no warn line that the validator was built after all, after the error line; logs:\n%s", after)
	}
}
