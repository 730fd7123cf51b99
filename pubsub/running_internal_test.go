package pubsub

import "testing"

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
	if !r.start(1, 7, &a) || !r.copied(0) {
		t.Errorf("the same message in another worker: twice %v, copied %v; want both", false, r.copied(0))
	}
	if r.start(1, 7, &b) {
		t.Error("another message at the same sequence was taken for a twin")
	}
	if r.start(2, 0, &a) {
		t.Error("a delivery without a sequence was taken for a twin")
	}
	r.done(0)
	if r.copied(0) {
		t.Error("done left the slot copied")
	}
	if r.start(2, 7, &a) {
		t.Error("a message that no worker runs any more was taken for a twin")
	}
}
