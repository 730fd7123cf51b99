package pubsub

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMemoryIdempotencyStoreRecordedAgain checks that a key recorded over
// and over within the ttl does not pile up entries (each Record appended
// one, and only expiry or a full store dropped them), and that dropping
// them forgets no key.
func TestMemoryIdempotencyStoreRecordedAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewMemoryIdempotencyStore(time.Hour, 1000)
	for i := range 10 {
		if err := s.Record(ctx, fmt.Sprint("other-", i)); err != nil {
			t.Fatal(err)
		}
	}
	for range 10_000 {
		if err := s.Record(ctx, "hot"); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	entries, keys := len(s.order), len(s.keys)
	s.mu.Unlock()
	if keys != 11 || entries > 2*keys+compactSlack {
		t.Errorf("%d keys held in %d entries; want 11 keys in at most %d", keys, entries, 2*keys+compactSlack)
	}
	for i := range 10 {
		if seen, _ := s.Seen(ctx, fmt.Sprint("other-", i)); !seen {
			t.Errorf("other-%d forgotten", i)
		}
	}
	if seen, _ := s.Seen(ctx, "hot"); !seen {
		t.Error("hot forgotten")
	}
}

// TestMemoryIdempotencyStoreFullRecordAgain checks that recording a key a
// full store holds forgets no other key: it needs no room.
func TestMemoryIdempotencyStoreFullRecordAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewMemoryIdempotencyStore(time.Hour, 2)
	for _, k := range []string{"a", "b", "b"} {
		if err := s.Record(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "b"} {
		if seen, _ := s.Seen(ctx, k); !seen {
			t.Errorf("%s forgotten: recording b again evicted it", k)
		}
	}
}
