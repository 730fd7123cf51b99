// Package deadline gives a context a deadline whose timer starts only when
// something waits for it.
//
// context.WithTimeout starts a runtime timer and registers the new context
// with its parent's cancellation at once: on kit's servers that was about
// 2 µs of CPU per call (BENCHMARKS.md, section 1.9) spent on every call
// that has a default deadline, though most calls finish without anything
// ever waiting on their context's Done channel (a handler that computes
// its answer, reads a cache, or fails validation). [New] does that
// work the first time Done is called (by a select, a database driver, an
// outgoing HTTP request, a derived context) and otherwise only compares
// the clock in Err. The standard library has no lazy form of it.
package deadline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// New is context.WithTimeout(parent, timeout) whose timer and link to the
// parent's cancellation are made on the first call to Done. Its Deadline,
// Err, Value and context.Cause answer as context.WithTimeout's would, but
// for one thing a context with no timer cannot tell: of a deadline that
// passed and a parent that ended since, it takes the parent for first
// unless Err saw the deadline before. Once Err says the context ended, it
// keeps saying the same;
// Cancel releases the timer if one was made and must be called, as
// context.WithTimeout's cancel. If parent's deadline is no later than
// timeout from now, New returns nil: parent already ends in time. Unlike
// context.WithTimeout, it costs one allocation (there is no CancelFunc to
// make).
func New(parent context.Context, timeout time.Duration) *Ctx {
	d, ok := deadlineFor(parent, timeout)
	if !ok {
		return nil // before allocating: no Ctx to make
	}
	return &Ctx{Context: parent, deadline: d}
}

// Init is [New] into c, a zero Ctx that the caller allocated as part of a
// struct of its own (pubsub's delivery state), which saves New's
// allocation. It reports whether c is to be used: false if parent already
// ends in time, and c is left as it was. c must not be copied once Init
// returned true.
func Init(c *Ctx, parent context.Context, timeout time.Duration) bool {
	return InitAt(c, parent, time.Now().Add(timeout))
}

// InitAt is [Init] with the deadline d instead of a timeout from now, for
// a caller that read the clock already (pubsub, which times a delivery
// from the same reading): d must carry a monotonic clock reading, as
// time.Now().Add(timeout) does, so that Err and Cancel compare the
// monotonic clock alone.
func InitAt(c *Ctx, parent context.Context, d time.Time) bool {
	if pd, ok := parent.Deadline(); ok && !pd.After(d) {
		return false
	}
	c.Context, c.deadline = parent, d
	return true
}

// deadlineFor returns the deadline timeout from now, and false if parent
// ends no later.
func deadlineFor(parent context.Context, timeout time.Duration) (time.Time, bool) {
	d := time.Now().Add(timeout)
	if pd, ok := parent.Deadline(); ok && !pd.After(d) {
		return time.Time{}, false
	}
	return d, true
}

// Ctx is a context with a deadline whose real context (a
// context.WithDeadline of the parent) is made on the first Done, or on
// Cancel, after which everything is that context's. Make one with [New].
type Ctx struct {
	context.Context // the parent, until armed
	deadline        time.Time

	once  sync.Once
	armed atomic.Pointer[armedCtx]
	// ended is how the context ended, as Err or Cancel first saw it
	// before Done armed it: 0, or endParent, endDeadline or endCanceled.
	// Err then keeps that answer, as the context.Context contract asks,
	// and arm's real context gives the same. arm sets endArmed on a
	// context that had not ended, which then records no end of its own:
	// a record made beside the real context (the clock past the deadline
	// before its timer fired, then a Cancel) would disagree with it.
	ended atomic.Uint32
}

const (
	endParent   = 1 + iota // the parent ended first: Err is the parent's
	endDeadline            // the deadline passed
	endCanceled            // Cancel was called
	endArmed               // armed before it ended: the real context's answers
)

type armedCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// arm makes the real context, once.
func (c *Ctx) arm() *armedCtx {
	c.once.Do(func() {
		var ctx context.Context
		var cancel context.CancelFunc
		// A context whose end Err or Cancel recorded ends so, with that
		// cause, whatever its parent or the clock did since. One that
		// had not ended is claimed, so that no end is recorded once the
		// real context decides.
		end := uint32(endArmed)
		if !c.ended.CompareAndSwap(0, endArmed) {
			end = c.ended.Load()
		}
		switch end {
		case endCanceled:
			ctx, cancel = context.WithCancel(context.WithoutCancel(c.Context))
			cancel()
		case endDeadline:
			ctx, cancel = context.WithDeadline(context.WithoutCancel(c.Context), c.deadline)
		default:
			ctx, cancel = context.WithDeadline(c.Context, c.deadline)
		}
		c.armed.Store(&armedCtx{ctx: ctx, cancel: cancel})
	})
	return c.armed.Load()
}

func (c *Ctx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *Ctx) Done() <-chan struct{} { return c.arm().ctx.Done() }

func (c *Ctx) Err() error {
	end := c.ended.Load()
	if end == 0 {
		end = c.end(0)
	}
	switch end {
	case endArmed:
		return c.arm().ctx.Err()
	case endParent:
		return c.Context.Err()
	case endDeadline:
		return context.DeadlineExceeded
	case endCanceled:
		return context.Canceled
	}
	return nil
}

// end records how the unarmed context ended, if it did: its parent, then
// its deadline, then otherwise (Cancel's endCanceled; 0 to only look).
// It returns what was recorded first, or endArmed once arm claimed the
// context: the real context then answers.
func (c *Ctx) end(otherwise uint32) uint32 {
	end := otherwise
	if c.Context.Err() != nil {
		end = endParent
	} else if time.Until(c.deadline) <= 0 { // the monotonic clock alone: the deadline has its reading
		end = endDeadline
	}
	if end != 0 {
		c.ended.CompareAndSwap(0, end)
	}
	return c.ended.Load()
}

// Value is the real context's once armed, so that context.Cause and the
// contexts derived from this one find its cancellation; a context whose
// own deadline or Cancel Err saw end it is armed first, so that
// context.Cause gives that end, not the cause of a parent that ended
// since.
func (c *Ctx) Value(key any) any {
	if a := c.armed.Load(); a != nil {
		return a.ctx.Value(key)
	}
	if end := c.ended.Load(); end == endDeadline || end == endCanceled {
		return c.arm().ctx.Value(key)
	}
	return c.Context.Value(key)
}

// Cancel releases the context's timer, if Done made one; the context is
// then canceled.
func (c *Ctx) Cancel() {
	if a := c.armed.Load(); a != nil {
		a.cancel()
		return
	}
	if c.end(endCanceled) == endArmed { // arm ran meanwhile
		c.arm().cancel()
	}
}

func (c *Ctx) String() string {
	return "deadline.New(" + c.deadline.String() + ")"
}
