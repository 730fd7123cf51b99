// Package exampletest runs the body of a test inside a runnable Example.
//
// The Examples of kittest and pubsubtest show helpers that take a
// testing.TB, which the testing package does not give an Example; without
// one, an Example can only be compiled (no "// Output:"), and its code never
// runs. [Run] gives the body a testing.TB of its own, so that such an
// Example runs and its output is checked. Written by hand: no library
// provides a testing.TB outside a test.
package exampletest

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
)

// Run calls body with a testing.TB, as the testing package calls a test:
// Fatal and FailNow end body's goroutine, Context is cancelled when body
// returns, then the Cleanup functions run, last registered first. Each
// failure is printed as a line "FAIL: …", so that the Example's output no
// longer matches. Logs (Log, Output) are discarded, so that they do not
// mix with the Example's output. A panic of body, or of a cleanup, runs
// the cleanups left, as a test's does (they stop the servers that body
// started), and Run then panics with it in its caller's goroutine, where
// the testing package reports the Example that panicked; the panic's
// stack is printed on standard error.
func Run(body func(t testing.TB)) {
	ctx, cancel := context.WithCancel(context.Background())
	t := &tb{ctx: ctx}
	panicked := inGoroutine(func() { body(t) })
	cancel()
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		if p := inGoroutine(f); panicked == nil {
			panicked = p
		}
	}
	if panicked != nil {
		panic(panicked)
	}
}

// inGoroutine runs f in a goroutine of its own, which runtime.Goexit (a
// Fatal) may end, and waits for it. It returns what f panicked with (its
// stack printed on standard error), or nil.
func inGoroutine(f func()) (panicked any) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				fmt.Fprintf(os.Stderr, "panic: %v\n\n%s\n", p, debug.Stack())
				panicked = p
			}
		}()
		f()
	}()
	<-done
	return panicked
}

// tb is the testing.TB of [Run]. The embedded interface is nil: a method
// that tb does not define panics, which fails the Example.
type tb struct {
	testing.TB
	ctx      context.Context
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

func (t *tb) Helper()                   {}
func (t *tb) Name() string              { return "Example" }
func (t *tb) Context() context.Context  { return t.ctx }
func (t *tb) Output() io.Writer         { return io.Discard }
func (t *tb) Log(...any)                {}
func (t *tb) Logf(string, ...any)       {}
func (t *tb) Error(args ...any)         { t.fail(fmt.Sprint(args...)) }
func (t *tb) Errorf(f string, a ...any) { t.fail(fmt.Sprintf(f, a...)) }
func (t *tb) Fail()                     { t.fail("failed") }
func (t *tb) FailNow()                  { t.Fail(); runtime.Goexit() }
func (t *tb) Fatal(args ...any)         { t.Error(args...); runtime.Goexit() }
func (t *tb) Fatalf(f string, a ...any) { t.Errorf(f, a...); runtime.Goexit() }

func (t *tb) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *tb) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *tb) fail(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	fmt.Println("FAIL:", msg)
}
