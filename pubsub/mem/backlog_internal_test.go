package mem

import (
	"testing"
	"time"

	"github.com/connectkit/connectkit/pubsub"
)

// TestBacklogSkipsWhatRetentionDropped: a group whose cursor the retention
// limit left far behind (its handlers stuck while the topic took and
// dropped 2^40 messages) counts its pending messages over the retained ones
// only: Backlog, which runs under the broker's lock at each scrape, looked
// at every sequence from the cursor on.
func TestBacklogSkipsWhatRetentionDropped(t *testing.T) {
	t.Parallel()
	b := New(WithMaxRetained(3))
	b.mu.Lock()
	tp := b.topic("topic")
	g := newGroup(tp, "sub")
	const dropped = 1 << 40
	tp.first, tp.next = dropped+1, dropped+1 // as if 2^40 messages had come and gone
	for range 4 {
		tp.append(&pubsub.Message{}, "", time.Now(), b.maxRetained)
	}
	tp.append(&pubsub.Message{}, "other", time.Now(), b.maxRetained) // a redrive for another group
	b.mu.Unlock()
	c := &consumer{b: b, g: g}
	type answer struct{ pending, unacked int64 }
	answered := make(chan answer, 1)
	go func() {
		p, u, err := c.Backlog(t.Context())
		if err != nil {
			t.Errorf("Backlog: %v", err)
		}
		answered <- answer{p, u}
	}()
	select {
	case a := <-answered:
		if a != (answer{pending: 2, unacked: 0}) {
			t.Errorf("Backlog = %d pending, %d unacknowledged; want 2, 0 (3 retained, one for another group)", a.pending, a.unacked)
		}
	case <-time.After(time.Minute): // the bound of a hang, not of speed
		t.Fatal("Backlog still counting after a minute")
	}
}
