// Package deadline gives a context a deadline whose timer starts only when
// something waits for it.
//
// context.WithTimeout starts a runtime timer and registers the new context
// with its parent's cancellation at once: on kit's servers that was about
// 2 µs of CPU per call (BENCHMARKS.md, section 1.9) spent on every call
// that has a default deadline, though most calls finish without anything
// ever waiting on their context's Done channel (a handler that computes
// its answer, reads a cache, or fails validation). [WithTimeout] does that
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

// WithTimeout is context.WithTimeout(parent, timeout) whose timer and link
// to the parent's cancellation are made on the first call to Done. Its
// Deadline, Err, Value and context.Cause answer as context.WithTimeout's
// would; cancel releases the timer if one was made and must be called, as
// context.WithTimeout's. If parent's deadline is sooner than timeout,
// WithTimeout returns context.WithCancel(parent), as context.WithTimeout
// does in effect.
func WithTimeout(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	d := time.Now().Add(timeout)
	if pd, ok := parent.Deadline(); ok && !pd.After(d) {
		return context.WithCancel(parent)
	}
	c := &lazyCtx{Context: parent, deadline: d}
	return c, c.cancel
}

// lazyCtx is a context with a deadline whose real context (a
// context.WithDeadline of the parent) is made on the first Done, or on
// cancel, after which everything is that context's.
type lazyCtx struct {
	context.Context // the parent, until armed
	deadline        time.Time

	once     sync.Once
	armed    atomic.Pointer[armedCtx]
	canceled atomic.Bool // cancel was called before Done was
}

type armedCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// arm makes the real context, once.
func (c *lazyCtx) arm() *armedCtx {
	c.once.Do(func() {
		ctx, cancel := context.WithDeadline(c.Context, c.deadline)
		c.armed.Store(&armedCtx{ctx: ctx, cancel: cancel})
		// After the Store: a cancel racing with arm either sees armed or
		// has set canceled before this Load.
		if c.canceled.Load() {
			cancel()
		}
	})
	return c.armed.Load()
}

func (c *lazyCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *lazyCtx) Done() <-chan struct{} { return c.arm().ctx.Done() }

func (c *lazyCtx) Err() error {
	if a := c.armed.Load(); a != nil {
		return a.ctx.Err()
	}
	if c.canceled.Load() {
		return context.Canceled
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value is the real context's once armed, so that context.Cause and the
// contexts derived from this one find its cancellation.
func (c *lazyCtx) Value(key any) any {
	if a := c.armed.Load(); a != nil {
		return a.ctx.Value(key)
	}
	return c.Context.Value(key)
}

func (c *lazyCtx) cancel() {
	c.canceled.Store(true)
	if a := c.armed.Load(); a != nil {
		a.cancel()
	}
}

func (c *lazyCtx) String() string {
	return "deadline.WithTimeout(" + c.deadline.String() + ")"
}
