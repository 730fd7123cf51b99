package interceptors

import (
	"runtime/debug"
	"strings"
	"testing"
)

func panickingHandler() { panic("boom") }

// passOn recovers a panic and panics again with it, as pubsub's delivery
// does to note the value for a dead letter.
func passOn(f func()) {
	defer func() {
		if r := recover(); r != nil {
			panic(r)
		}
	}()
	f()
}

func TestPanicStackStartsAtTheHandler(t *testing.T) {
	t.Parallel()
	var stack string
	func() {
		defer func() {
			if recover() != nil {
				stack = panicStack(debug.Stack())
			}
		}()
		passOn(panickingHandler)
	}()
	lines := strings.Split(stack, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[1], "panic(") || !strings.Contains(lines[3], "panickingHandler") {
		t.Errorf("stack does not start with the handler's panic:\n%s", stack)
	}
}
