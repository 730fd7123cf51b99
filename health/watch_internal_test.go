package health

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A watcher that cannot keep up must not hold back status changes: they
// coalesce, and the watcher then sends the latest status once.
func TestSlowWatcherDoesNotBlockChanges(t *testing.T) {
	t.Parallel()
	h := New()
	rep, err := h.AddReporter(Check{Name: "subscriber"})
	if err != nil {
		t.Fatal(err)
	}
	unblock := make(chan struct{})
	sent := make(chan servingStatus, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- h.watch(ctx, "", func(st servingStatus) error {
			sent <- st
			<-unblock // the client reads nothing for now
			return nil
		})
	}()
	if st := <-sent; st != statusNotServing {
		t.Fatalf("first status = %v, want NOT_SERVING (pending reporter)", st)
	}

	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		for i := range 101 {
			if i%2 == 0 {
				rep.Report(nil)
			} else {
				rep.Report(errors.New("down"))
			}
		}
	}()
	select {
	case <-flipped:
	case <-time.After(time.Minute):
		t.Fatal("status changes blocked behind a slow watcher")
	}
	close(unblock)
	if st := <-sent; st != statusServing {
		t.Fatalf("after the changes: %v, want the latest, SERVING", st)
	}
	rep.Report(errors.New("down again"))
	if st := <-sent; st != statusNotServing {
		t.Fatalf("next change: %v, want NOT_SERVING", st)
	}
	select {
	case st := <-sent:
		t.Fatalf("extra message %v", st)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch returned %v, want context.Canceled", err)
	}
	if n := Watchers(h); n != 0 {
		t.Fatalf("%d watchers left after the stream ended", n)
	}
}
