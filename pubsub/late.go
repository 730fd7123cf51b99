package pubsub

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxLate bounds the messages that lateCopies remembers: past it, it
// remembers no more until some expire (copies are then handled again, at
// least once as ever).
const maxLate = 1024

// lateCopies remembers the messages that a subscriber settled (acknowledged
// or dead-lettered) after they had waited AckWait or more since their
// fetch, so that it acknowledges without handling the copies that the
// broker delivered meanwhile, fetched after them into the same buffer:
// without it, each such copy was handled again, its attempt counted as
// failed, and a copy past MaxAttempts was dead-lettered as a message that
// never got a verdict. A copy is a delivery of the same message (the
// broker's sequence and the id) with a higher attempt.
type lateCopies struct {
	keep time.Duration // how long a message is remembered
	n    atomic.Int32  // how many are, read without mu
	mu   sync.Mutex
	m    map[lateKey]lateEntry
}

type lateKey struct {
	seq uint64
	id  string
}

type lateEntry struct {
	attempt int
	at      time.Time
}

// sequenced is a Delivery that tells its message's position in the
// subscription's log (see [Delivery]).
type sequenced interface{ Sequence() uint64 }

// add remembers d, settled after it waited AckWait or more, unless it
// does not tell its sequence (0: see [Delivery]).
func (l *lateCopies) add(d Delivery) {
	sd, ok := d.(sequenced)
	if !ok || sd.Sequence() == 0 {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[lateKey]lateEntry)
	}
	if len(l.m) >= maxLate {
		for k, e := range l.m {
			if now.Sub(e.at) > l.keep {
				delete(l.m, k)
			}
		}
		if len(l.m) >= maxLate {
			return
		}
	}
	l.m[lateKey{sd.Sequence(), d.Message().ID}] = lateEntry{attempt: d.Attempt(), at: now}
	l.n.Store(int32(len(l.m)))
}

// isCopy reports whether d, delivered at attempt, is a copy of a message
// remembered, which it then forgets if it expired. Its first test is
// inlined: a first attempt, or nothing remembered, costs a few
// instructions.
func (l *lateCopies) isCopy(d Delivery, attempt int) bool {
	return attempt > 1 && l.n.Load() > 0 && l.lookUp(d)
}

func (l *lateCopies) lookUp(d Delivery) bool {
	sd, ok := d.(sequenced)
	if !ok {
		return false
	}
	k := lateKey{sd.Sequence(), d.Message().ID}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[k]
	if ok && time.Since(e.at) > l.keep {
		delete(l.m, k)
		l.n.Store(int32(len(l.m)))
		return false
	}
	return ok && d.Attempt() > e.attempt
}
