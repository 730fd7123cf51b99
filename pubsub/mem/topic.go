package mem

import (
	"container/heap"
	"time"

	"github.com/connectkit/connectkit/pubsub"
)

// topic is the retained log of a topic and its subscriptions (groups). All
// its fields are guarded by Broker.mu.
type topic struct {
	broker *Broker
	name   string
	log    []*entry // log[i].seq == first+i; nil where trimmed
	first  uint64   // sequence of log[0]
	next   uint64   // sequence of the next message
	groups map[string]*group
	// replays are the replaying subscriptions' groups, one per consumer:
	// they hold no message back (entry.pending counts the durable groups).
	replays map[*group]struct{}
	// retainAll: a replaying subscription was made, so acknowledged
	// messages are kept (up to the retention limit) for the next one.
	retainAll bool

	dedup      map[string]time.Time
	dedupSweep time.Time
}

type entry struct {
	seq     uint64
	msg     *pubsub.Message
	only    string // a re-driven message: delivered to this group only
	pending int    // groups that have yet to acknowledge it
	at      time.Time
}

func (t *topic) isDuplicate(id string, now time.Time, window time.Duration) bool {
	if now.After(t.dedupSweep) {
		for k, at := range t.dedup {
			if now.Sub(at) > window {
				delete(t.dedup, k)
			}
		}
		t.dedupSweep = now.Add(window / 2)
	}
	if at, ok := t.dedup[id]; ok && now.Sub(at) <= window {
		return true
	}
	t.dedup[id] = now
	return false
}

func (t *topic) append(msg *pubsub.Message, only string, now time.Time, maxRetained int) {
	e := &entry{seq: t.next, msg: msg, only: only, at: now}
	t.next++
	for _, g := range t.groups {
		if only == "" || only == g.name {
			e.pending++
		}
	}
	t.log = append(t.log, e)
	for len(t.log) > maxRetained {
		t.drop()
	}
	for _, g := range t.groups {
		if only == "" || only == g.name {
			g.signal()
		}
	}
	if only == "" {
		for g := range t.replays {
			g.signal()
		}
	}
}

func (t *topic) entry(seq uint64) *entry {
	if seq < t.first || seq >= t.first+uint64(len(t.log)) {
		return nil
	}
	return t.log[seq-t.first]
}

// settle records that a group acknowledged (or terminated) seq, and trims
// the messages at the head of the log that no group waits for.
func (t *topic) settle(seq uint64) {
	if e := t.entry(seq); e != nil && e.pending > 0 {
		e.pending--
	}
	for len(t.log) > 0 && len(t.groups) > 0 && !t.retainAll && (t.log[0] == nil || t.log[0].pending == 0) {
		t.drop()
	}
}

func (t *topic) drop() {
	t.log[0] = nil
	t.log = t.log[1:]
	t.first++
}

// group is a durable subscription, or one consumer of a replaying one: its
// position in the topic and its delivered, unacknowledged messages.
type group struct {
	t         *topic
	name      string
	replay    bool   // a replaying subscription's: in t.replays, not t.groups
	upTo      uint64 // a replay's last message at its start (see CaughtUp)
	ackWait   time.Duration
	cursor    uint64            // next sequence never delivered to the group
	states    map[uint64]*state // delivered, unacknowledged
	timers    timerHeap         // redeliveries due: naks and ack-wait expiries
	consumers map[*consumer]struct{}
}

type state struct {
	seq      uint64
	attempts int
	gen      uint64    // bumped on every delivery: naks of older deliveries are ignored
	due      time.Time // when to deliver again (ack wait expiry or nak delay)
	index    int       // in group.timers
}

func newGroup(t *topic, name string) *group {
	g := &group{t: t, name: name, cursor: t.first, states: make(map[uint64]*state), consumers: make(map[*consumer]struct{})}
	for _, e := range t.log {
		if e != nil && (e.only == "" || e.only == name) {
			e.pending++
		}
	}
	t.groups[name] = g
	return g
}

// newReplay returns the group of a consumer of a replaying subscription,
// which begins with the first retained message stored at since or later.
func newReplay(t *topic, name string, since time.Time) *group {
	g := &group{t: t, name: name, replay: true, cursor: t.first, upTo: t.next - 1, states: make(map[uint64]*state), consumers: make(map[*consumer]struct{})}
	for ; g.cursor < t.next && !since.IsZero(); g.cursor++ {
		if e := t.entry(g.cursor); e != nil && !e.at.Before(since) {
			break
		}
	}
	t.replays[g] = struct{}{}
	t.retainAll = true
	return g
}

// wants reports whether e, nil where trimmed, is delivered to the group: a
// re-driven message goes to its durable group only.
func (g *group) wants(e *entry) bool {
	return e != nil && (e.only == "" || (!g.replay && e.only == g.name))
}

func (g *group) signal() {
	for c := range g.consumers {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// next returns the next message to deliver and marks it delivered, or the
// time until a redelivery is due (0 when none is).
func (g *group) next(now time.Time) (*delivery, time.Duration) {
	for len(g.timers) > 0 {
		st := g.timers[0]
		if st.due.After(now) {
			break
		}
		e := g.t.entry(st.seq)
		if e == nil { // dropped by the retention limit
			heap.Pop(&g.timers)
			delete(g.states, st.seq)
			continue
		}
		return g.deliver(e, st, now), 0
	}
	for g.cursor < g.t.next {
		e := g.t.entry(g.cursor)
		g.cursor++
		if !g.wants(e) {
			continue
		}
		st := &state{seq: e.seq, index: -1}
		g.states[e.seq] = st
		return g.deliver(e, st, now), 0
	}
	if len(g.timers) > 0 {
		return nil, g.timers[0].due.Sub(now)
	}
	return nil, 0
}

func (g *group) deliver(e *entry, st *state, now time.Time) *delivery {
	st.attempts++
	st.gen++
	st.due = now.Add(g.ackWait)
	if st.index < 0 {
		heap.Push(&g.timers, st)
	} else {
		heap.Fix(&g.timers, st.index)
	}
	msg := *e.msg
	msg.Header = e.msg.Header.Clone() // the subscriber owns it
	return &delivery{g: g, seq: e.seq, gen: st.gen, attempt: st.attempts, msg: &msg, at: e.at}
}

// settle removes seq from the group's unacknowledged messages.
func (g *group) settle(seq uint64) {
	st := g.states[seq]
	if st == nil {
		return
	}
	heap.Remove(&g.timers, st.index)
	delete(g.states, seq)
	if !g.replay {
		g.t.settle(seq)
	}
}

// reschedule delivers seq again after delay, unless it was delivered again
// since delivery gen.
func (g *group) reschedule(seq, gen uint64, due time.Time) {
	if g.extend(seq, gen, due) {
		g.signal()
	}
}

// extend makes seq due again at due, and reports whether it did: not if
// seq was delivered again since delivery gen, or settled. A due later than
// now wakes no consumer (InProgress).
func (g *group) extend(seq, gen uint64, due time.Time) bool {
	st := g.states[seq]
	if st == nil || st.gen != gen {
		return false
	}
	st.due = due
	heap.Fix(&g.timers, st.index)
	return true
}

// timerHeap orders the unacknowledged messages by when they are due again.
type timerHeap []*state

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	st := x.(*state)
	st.index = len(*h)
	*h = append(*h, st)
}
func (h *timerHeap) Pop() any {
	old := *h
	st := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	st.index = -1
	return st
}
