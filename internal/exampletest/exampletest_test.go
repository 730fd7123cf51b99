package exampletest_test

import (
	"fmt"
	"testing"

	"github.com/connectkit/connectkit/internal/exampletest"
)

// The order of a test's life: body, Context cancelled, cleanups last first.
// A Fatal ends the body (and a cleanup) where it is, and prints its failure.
func ExampleRun() {
	exampletest.Run(func(t testing.TB) {
		t.Cleanup(func() { fmt.Println("cleanup 1, failed:", t.Failed()) })
		t.Cleanup(func() {
			fmt.Println("cleanup 2, context:", t.Context().Err())
			t.Fatal("in a cleanup")
			fmt.Println("not reached")
		})
		fmt.Println("body, context:", t.Context().Err())
		t.Fatalf("stop at %d", 1)
		fmt.Println("not reached")
	})
	fmt.Println("Run returned")
	// Output:
	// body, context: <nil>
	// FAIL: stop at 1
	// cleanup 2, context: context canceled
	// FAIL: in a cleanup
	// cleanup 1, failed: true
	// Run returned
}

// TestRunPanic: a panic of the body, then one of a cleanup, still run every
// cleanup (they stop the Example's servers), and Run panics with the body's
// in its caller's goroutine, where the testing package names the Example.
func TestRunPanic(t *testing.T) {
	var ran []string
	defer func() {
		if p := recover(); p != "body" {
			t.Errorf("Run panicked with %v, want the body's panic", p)
		}
		if got := fmt.Sprint(ran); got != "[2 1]" {
			t.Errorf("cleanups ran: %s, want [2 1]", got)
		}
	}()
	exampletest.Run(func(tb testing.TB) {
		tb.Cleanup(func() { ran = append(ran, "1") })
		tb.Cleanup(func() {
			ran = append(ran, "2")
			panic("cleanup")
		})
		panic("body")
	})
	t.Error("Run returned")
}
