package pubsub

import (
	"sync/atomic"
	"time"
)

// handOff is a delivery on its way from the broker's deliver call to a
// worker, with what the worker needs to bound how long the message waited
// since the broker fetched it: a broker counts AckWait from the fetch (see
// [handOffWaits]).
type handOff struct {
	d Delivery
	// before is how long deliver waited for a free worker while it held
	// the messages fetched before d (the last Prefetch-1 of them): d may
	// have waited in the broker's buffer that long.
	before time.Duration
	// blocked says that deliver waited for a free worker with d, since
	// blockedAt (handOffWaits.now).
	blocked   bool
	blockedAt time.Duration
}

// handOffWaits bounds how long a message waited between its fetch and its
// handler's start, without reading the clock unless deliver waits for a
// worker: a message can wait in the broker's buffer only while deliver is
// blocked with an earlier one. A broker fetches at most Prefetch messages
// that it has not passed to deliver yet, counting the one it is passing
// (natsjs asks nats.go for Prefetch and nats.go counts a message until its
// callback returns; mem fetches one), so the k-th message was fetched after
// deliver returned the (k-Prefetch)-th: it waited at most as long as
// deliver blocked since, which is total's growth over the last Prefetch
// hand-offs, as ring holds it.
type handOffWaits struct {
	epoch time.Time
	total atomic.Int64   // how long deliver has blocked, in all
	seq   atomic.Uint64  // hand-offs begun
	ring  []atomic.Int64 // total at the end of each of the last len(ring) hand-offs
}

func (w *handOffWaits) init(prefetch int) {
	w.epoch = time.Now()
	w.ring = make([]atomic.Int64, max(prefetch, 1))
}

// now is the monotonic time since init.
func (w *handOffWaits) now() time.Duration { return time.Since(w.epoch) }

// begin starts the hand-off of d and returns it, with the slot that end
// takes. Brokers call deliver one call at a time; natsjs's consumptions
// replaced after a reconnect may overlap a new one while they drain, hence
// the atomics (which then make the bound loose, not unsafe).
func (w *handOffWaits) begin(d Delivery) (handOff, int) {
	slot := int(w.seq.Add(1) % uint64(len(w.ring)))
	return handOff{d: d, before: time.Duration(w.total.Load() - w.ring[slot].Load())}, slot
}

// end ends the hand-off begun with slot, after deliver blocked for blocked.
func (w *handOffWaits) end(slot int, blocked time.Duration) {
	total := w.total.Load()
	if blocked > 0 {
		total = w.total.Add(int64(blocked))
	}
	w.ring[slot].Store(total)
}

// waited returns how long h's message may have waited since its fetch,
// at most: 0 unless deliver blocked during its hand-off or the last
// Prefetch-1 before it.
func (w *handOffWaits) waited(h handOff) time.Duration {
	if !h.blocked {
		return h.before
	}
	return h.before + w.now() - h.blockedAt
}
