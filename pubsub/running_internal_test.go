package pubsub

import (
	"testing"
	"time"
)

// TestRunningMessages: a worker finds the message it took running in
// another worker by sequence and id; another message at the same sequence
// (a stream created again) or a Delivery without a sequence is not one.
func TestRunningMessages(t *testing.T) {
	t.Parallel()
	r := make(runningMessages, 3)
	a, b := "a", "b"
	if r.start(0, 7, &a) {
		t.Fatal("the first start found a twin")
	}
	if !r.start(1, 7, &a) {
		t.Error("the same message in another worker was not found")
	}
	if r.start(1, 7, &b) {
		t.Error("another message at the same sequence was taken for a twin")
	}
	if r.start(2, 0, &a) {
		t.Error("a delivery without a sequence was taken for a twin")
	}
	r.done(0)
	if r.start(2, 7, &a) {
		t.Error("a message that no worker runs any more was taken for a twin")
	}
}

// TestGivenBack: the deliveries given back are counted per message (its
// sequence and id), for every later delivery until the message is settled
// (take) or forgotten for keep; past maxLate messages, no more are remembered.
func TestGivenBack(t *testing.T) {
	t.Parallel()
	g := givenBack{keep: time.Hour}
	if n := g.of(7, "a"); n != 0 {
		t.Fatalf("of before any add = %d, want 0", n)
	}
	g.add(7, "a")
	g.add(7, "a")
	g.add(8, "b")
	for range 2 { // a retry that fails again keeps its count
		if n := g.of(7, "a"); n != 2 {
			t.Errorf("of(7, a) = %d, want 2", n)
		}
	}
	if n := g.of(7, "other"); n != 0 {
		t.Errorf("another message at the same sequence: of = %d, want 0", n)
	}
	if n := g.of(0, "a"); n != 0 {
		t.Errorf("a delivery without a sequence: of = %d, want 0", n)
	}
	if n := g.take(&seqDelivery{seq: 7, msg: Message{ID: "a"}}); n != 2 {
		t.Errorf("take(7, a) = %d, want 2", n)
	}
	if n := g.of(7, "a"); n != 0 {
		t.Errorf("of after take = %d, want 0", n)
	}
	if n := g.take(&seqDelivery{seq: 7, msg: Message{ID: "a"}}); n != 0 {
		t.Errorf("a second take = %d, want 0", n)
	}
	if n := g.of(8, "b"); n != 1 {
		t.Errorf("of(8, b) = %d, want 1: take forgot another message", n)
	}

	expired := givenBack{keep: time.Nanosecond}
	expired.add(1, "x")
	time.Sleep(time.Millisecond)
	if n := expired.of(1, "x"); n != 0 || expired.n.Load() != 0 {
		t.Errorf("an expired message: of = %d, remembered %d; want 0, 0", n, expired.n.Load())
	}

	// A message settled by another instance is never taken here: a
	// sweep of take's forgets it once keep passed, and the hot path is
	// back to an atomic load.
	elsewhere := givenBack{keep: time.Nanosecond}
	elsewhere.add(1, "x")
	time.Sleep(time.Millisecond)
	for i := range sweepEvery {
		elsewhere.take(&seqDelivery{seq: uint64(i + 2), msg: Message{ID: "y"}})
	}
	if got := elsewhere.n.Load(); got != 0 {
		t.Errorf("a message not delivered here for keep: remembered %d, want 0", got)
	}

	full := givenBack{keep: time.Hour}
	for i := range maxLate + 1 {
		full.add(uint64(i+1), "m")
	}
	if got := full.n.Load(); got != maxLate {
		t.Errorf("remembered %d messages, want at most %d", got, maxLate)
	}
}
