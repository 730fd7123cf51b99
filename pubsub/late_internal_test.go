package pubsub

import (
	"testing"
	"time"
)

// seqDelivery is a Delivery with a Sequence and no verdicts.
type seqDelivery struct {
	msg     Message
	seq     uint64
	attempt int
}

func (d *seqDelivery) Message() *Message       { return &d.msg }
func (d *seqDelivery) Attempt() int            { return d.attempt }
func (d *seqDelivery) Sequence() uint64        { return d.seq }
func (d *seqDelivery) Ack() error              { return nil }
func (d *seqDelivery) Nak(time.Duration) error { return nil }
func (d *seqDelivery) Term(string) error       { return nil }

// A copy is a later delivery of the message remembered: same sequence, same
// id, a higher attempt, within keep. A message published again with the
// same id (another sequence), a delivery of another message at the same
// sequence (a stream made again) and the remembered delivery itself are
// not, nor is anything once keep passed.
func TestLateCopies(t *testing.T) {
	t.Parallel()
	l := lateCopies{keep: time.Hour}
	l.add(&seqDelivery{msg: Message{ID: "a"}, seq: 7, attempt: 2})
	for _, tc := range []struct {
		name string
		d    *seqDelivery
		want bool
	}{
		{name: "copy", d: &seqDelivery{msg: Message{ID: "a"}, seq: 7, attempt: 3}, want: true},
		{name: "same delivery", d: &seqDelivery{msg: Message{ID: "a"}, seq: 7, attempt: 2}},
		{name: "other sequence", d: &seqDelivery{msg: Message{ID: "a"}, seq: 8, attempt: 3}},
		{name: "other id", d: &seqDelivery{msg: Message{ID: "b"}, seq: 7, attempt: 3}},
	} {
		if got := l.isCopy(tc.d, tc.d.attempt); got != tc.want {
			t.Errorf("%s: isCopy = %v, want %v", tc.name, got, tc.want)
		}
	}
	l.keep = 0
	if l.isCopy(&seqDelivery{msg: Message{ID: "a"}, seq: 7, attempt: 3}, 3) {
		t.Error("after keep: isCopy = true, want false")
	}
	if n := l.n.Load(); n != 0 {
		t.Errorf("after keep: %d remembered, want 0", n)
	}
}

// A delivery of sequence 0 tells no sequence (natsjs: a message whose id is
// made of its stream sequence, which a stream created again gives to
// another message with the same id): it is not remembered, so that a later
// delivery with the same id passes for no copy.
func TestLateCopiesWithoutSequence(t *testing.T) {
	t.Parallel()
	l := lateCopies{keep: time.Hour}
	l.add(&seqDelivery{msg: Message{ID: "S:5"}, attempt: 1})
	if l.isCopy(&seqDelivery{msg: Message{ID: "S:5"}, attempt: 2}, 2) {
		t.Error("isCopy = true for a delivery without a sequence, want false")
	}
}
