package pubsub

import (
	"sync"
	"sync/atomic"
	"time"
)

// runningMessages holds, for each worker of a Subscriber, the sequence
// (see [Delivery]) of the message its handler runs, or 0. A broker
// delivers a message again once AckWait passed without a verdict, while
// the handler that overran it may still run in this process (one that
// ignores its context's deadline, a stalled process); natsjs's consumption
// that replaces one that missed its heartbeats (pullAgain) may hand over a
// message while the one it replaced still hands over an earlier delivery
// of it. A worker that finds the message it took running in another
// worker does not run it as well: at least once allows a later delivery,
// not two handlers of one message at once in one process.
//
// It is a slot per worker rather than a set under a lock: a delivery
// stores its sequence and id in its own slot (two atomic stores, and two
// to clear it) and reads the others' sequences (Concurrency atomic loads,
// 16 by default; the id of one that matches), with no lock taken and
// nothing allocated. Each stores before it reads, so of two workers that
// take the same message at once at least one sees the other (both may,
// and both give it back). The deliveries given back are counted in
// givenBack, by message: whether a slot's message had copies is not the
// slot's to keep, as a worker that finds it may mark it only after the
// slot moved on to another message.
type runningMessages []running

// running is a worker's slot.
type running struct {
	seq atomic.Uint64
	// id is the message's id: a stream created again gives a sequence
	// to another message, which must not wait for the first.
	id atomic.Pointer[string]
}

// start marks slot as running the message of sequence seq and id *id,
// which the message holds and nothing changes until done, and reports
// whether another slot runs it too. A seq of 0 (a Delivery that cannot
// tell) is never found.
func (r runningMessages) start(slot int, seq uint64, id *string) (twice bool) {
	if seq == 0 || len(r) < 2 {
		return false
	}
	r[slot].id.Store(id)
	r[slot].seq.Store(seq)
	for i := range r {
		// The sequence first, the rest only on a match: the loop that
		// most deliveries run through is a load, a compare and a branch
		// (~5 instructions a slot, where i != slot first took ~15).
		if r[i].seq.Load() != seq || i == slot {
			continue
		}
		if other := r[i].id.Load(); other != nil && *other == *id {
			r[slot].seq.Store(0)
			r[slot].id.Store(nil)
			return true
		}
	}
	return false
}

// done clears slot.
func (r runningMessages) done(slot int) {
	if len(r) >= 2 {
		r[slot].seq.Store(0)
		r[slot].id.Store(nil) // the message may go
	}
}

// sequenceOf returns d's message's sequence, or 0 when d does not tell.
func sequenceOf(d Delivery) uint64 {
	if sd, ok := d.(sequenced); ok {
		return sd.Sequence()
	}
	return 0
}

// givenBack counts, for each message, its deliveries that a worker gave
// back because another worker of the subscriber ran it (see
// runningMessages.start). The broker counted each as an attempt though no
// handler ran it: a handler that overran AckWait a few times and then
// failed had its message dead-lettered after that one run (max_attempts,
// "no verdict"), its retry past MaxAttempts. The subscriber takes them off
// the broker's count of the message's later deliveries while it remembers
// them: until the message is settled here, or for keep after its last
// delivery here (a retry that another instance takes, or one past maxLate
// messages remembered, counts them as the broker does).
type givenBack struct {
	keep time.Duration
	n    atomic.Int32 // how many messages are remembered, read without mu
	mu   sync.Mutex
	m    map[lateKey]givenEntry
	// takes counts the takes: every sweepEvery-th forgets the messages
	// not delivered here for keep (settled by another instance, never
	// taken here), each of which would cost every settle the lock.
	takes int
}

// sweepEvery is how many takes of givenBack's look once for messages
// that expired: time.Now at each cost a take three times its lock.
const sweepEvery = 256

type givenEntry struct {
	n  int       // deliveries given back
	at time.Time // the message's last delivery
}

// add counts a delivery of the message of sequence seq and id given back.
func (g *givenBack) add(seq uint64, id string) {
	now := time.Now()
	k := lateKey{seq, id}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[lateKey]givenEntry)
	}
	e, ok := g.m[k]
	if !ok && len(g.m) >= maxLate {
		for k, e := range g.m {
			if now.Sub(e.at) > g.keep {
				delete(g.m, k)
			}
		}
		if len(g.m) >= maxLate {
			return
		}
	}
	g.m[k] = givenEntry{n: e.n + 1, at: now}
	g.n.Store(int32(len(g.m)))
}

// of returns how many deliveries of the message of sequence seq and id
// were given back, as remembered. Its first test is inlined: with nothing
// remembered it costs an atomic load.
func (g *givenBack) of(seq uint64, id string) int {
	if g.n.Load() == 0 || seq == 0 {
		return 0
	}
	return g.lookUp(seq, id)
}

func (g *givenBack) lookUp(seq uint64, id string) int {
	now := time.Now()
	k := lateKey{seq, id}
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.m[k]
	switch {
	case !ok:
		return 0
	case now.Sub(e.at) > g.keep:
		delete(g.m, k)
		g.n.Store(int32(len(g.m)))
		return 0
	}
	e.at = now
	g.m[k] = e
	return e.n
}

// take forgets d's message, settled, and returns how many of its
// deliveries were given back, as of returns them. With nothing
// remembered it costs an atomic load.
func (g *givenBack) take(d Delivery) int {
	if g.n.Load() == 0 {
		return 0
	}
	k := lateKey{sequenceOf(d), d.Message().ID}
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.m[k]
	if ok {
		delete(g.m, k)
	}
	if g.takes++; g.takes%sweepEvery == 0 {
		now := time.Now()
		for k, e := range g.m {
			if now.Sub(e.at) > g.keep {
				delete(g.m, k)
				ok = true
			}
		}
	}
	if ok {
		g.n.Store(int32(len(g.m)))
	}
	return e.n
}
