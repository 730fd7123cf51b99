package natsjs_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// TestDataDirIsLocked: a second embedded server on the data directory of a
// running one fails to start, with an error naming the directory, instead
// of both writing one store (which corrupts it); once the first is closed,
// it starts.
func TestDataDirIsLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := natsjs.New(context.Background(), natsjs.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	second, err := natsjs.New(context.Background(), natsjs.Config{DataDir: dir})
	if err == nil {
		_ = second.Close()
		_ = first.Close()
		t.Fatal("a second embedded server started on the data directory of a running one")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q; want one that names %s as in use", err, dir)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := natsjs.New(context.Background(), natsjs.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Error(err)
	}
}

// TestConcurrentClosesUnlockOnce: Close, idempotent and safe for concurrent
// use, releases the data directory's lock once when called from two
// goroutines at once (under -race: two unlocks raced on the lock file, the
// second reading its descriptor while the first closed it, and so could
// unlock a file that reused the number), and the directory is free after.
func TestConcurrentClosesUnlockOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for range 3 {
		b, err := natsjs.New(context.Background(), natsjs.Config{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { _ = b.Close() })
		}
		wg.Wait()
	}
}
