package deadline_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/deadline"
)

type key struct{}

func TestDeadlinePassesWithoutDone(t *testing.T) {
	t.Parallel()
	parent := context.WithValue(t.Context(), key{}, "v")
	ctx, cancel := deadline.WithTimeout(parent, 20*time.Millisecond)
	defer cancel()
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > 20*time.Millisecond {
		t.Fatalf("Deadline() = %v, %v", d, ok)
	}
	if ctx.Err() != nil || ctx.Value(key{}) != "v" {
		t.Fatalf("fresh context: Err %v, Value %v", ctx.Err(), ctx.Value(key{}))
	}
	time.Sleep(30 * time.Millisecond)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err() after the deadline = %v", ctx.Err())
	}
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Done not closed after the deadline")
	}
	if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Errorf("Cause = %v", context.Cause(ctx))
	}
}

func TestDoneClosesAtDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := deadline.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err() = %v", ctx.Err())
	}
}

func TestParentCancellation(t *testing.T) {
	t.Parallel()
	for _, waitFirst := range []bool{false, true} {
		parent, cancelParent := context.WithCancelCause(t.Context())
		ctx, cancel := deadline.WithTimeout(parent, time.Hour)
		if waitFirst {
			_ = ctx.Done()
		}
		cause := errors.New("shutting down")
		cancelParent(cause)
		<-ctx.Done()
		if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(context.Cause(ctx), cause) {
			t.Errorf("waitFirst=%v: Err %v, Cause %v", waitFirst, ctx.Err(), context.Cause(ctx))
		}
		cancel()
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	for _, waitFirst := range []bool{false, true} {
		ctx, cancel := deadline.WithTimeout(t.Context(), time.Hour)
		if waitFirst {
			_ = ctx.Done()
		}
		cancel()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("waitFirst=%v: Err %v", waitFirst, ctx.Err())
		}
		<-ctx.Done()
	}
}

// TestDerivedContexts checks that contexts made from the lazy one end with
// it: the standard library links them by Done and Value.
func TestDerivedContexts(t *testing.T) {
	t.Parallel()
	ctx, cancel := deadline.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	stopped := make(chan struct{})
	context.AfterFunc(ctx, func() { close(stopped) })
	<-child.Done()
	<-stopped
	if !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("child Err() = %v", child.Err())
	}
}

func TestSoonerParentDeadline(t *testing.T) {
	t.Parallel()
	parent, cancelParent := context.WithTimeout(t.Context(), time.Minute)
	defer cancelParent()
	want, _ := parent.Deadline()
	ctx, cancel := deadline.WithTimeout(parent, time.Hour)
	defer cancel()
	if got, _ := ctx.Deadline(); !got.Equal(want) {
		t.Fatalf("Deadline() = %v, want the parent's %v", got, want)
	}
}

// TestConcurrentUse races Done, Err, Value and cancel (run with -race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	for range 100 {
		ctx, cancel := deadline.WithTimeout(t.Context(), time.Millisecond)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				switch i {
				case 0:
					<-ctx.Done()
				case 1:
					_ = ctx.Err()
					_ = ctx.Value(key{})
				case 2:
					cancel()
				case 3:
					_ = context.Cause(ctx)
				}
			})
		}
		wg.Wait()
		<-ctx.Done()
		if ctx.Err() == nil {
			t.Fatal("Err() nil after Done")
		}
	}
}

// BenchmarkWithTimeout compares a call's deadline that nothing waits on
// with context.WithTimeout's, under a cancelable parent as a server's
// request context is.
func BenchmarkWithTimeout(b *testing.B) {
	parent, cancel := context.WithCancel(b.Context())
	defer cancel()
	b.Run("context", func(b *testing.B) {
		for b.Loop() {
			ctx, cancel := context.WithTimeout(parent, time.Second)
			_ = ctx.Err()
			cancel()
		}
	})
	b.Run("lazy", func(b *testing.B) {
		for b.Loop() {
			ctx, cancel := deadline.WithTimeout(parent, time.Second)
			_ = ctx.Err()
			cancel()
		}
	})
}
