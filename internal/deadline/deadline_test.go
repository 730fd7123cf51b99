package deadline_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/deadline"
)

type key struct{}

func TestDeadlinePassesWithoutDone(t *testing.T) {
	t.Parallel()
	parent := context.WithValue(t.Context(), key{}, "v")
	ctx := deadline.New(parent, 20*time.Millisecond)
	defer ctx.Cancel()
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > 20*time.Millisecond {
		t.Fatalf("Deadline() = %v, %v", d, ok)
	}
	if ctx.Err() != nil || ctx.Value(key{}) != "v" {
		t.Fatalf("fresh context: Err %v, Value %v", ctx.Err(), ctx.Value(key{}))
	}
	time.Sleep(30 * time.Millisecond)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err() after the deadline = %v", ctx.Err())
	}
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Done not closed after the deadline")
	}
	if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Errorf("Cause = %v", context.Cause(ctx))
	}
}

func TestDoneClosesAtDeadline(t *testing.T) {
	t.Parallel()
	ctx := deadline.New(t.Context(), 10*time.Millisecond)
	defer ctx.Cancel()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err() = %v", ctx.Err())
	}
}

func TestParentCancellation(t *testing.T) {
	t.Parallel()
	for _, waitFirst := range []bool{false, true} {
		parent, cancelParent := context.WithCancelCause(t.Context())
		ctx := deadline.New(parent, time.Hour)
		if waitFirst {
			_ = ctx.Done()
		}
		cause := errors.New("shutting down")
		cancelParent(cause)
		<-ctx.Done()
		if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(context.Cause(ctx), cause) {
			t.Errorf("waitFirst=%v: Err %v, Cause %v", waitFirst, ctx.Err(), context.Cause(ctx))
		}
		ctx.Cancel()
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	for _, waitFirst := range []bool{false, true} {
		ctx := deadline.New(t.Context(), time.Hour)
		if waitFirst {
			_ = ctx.Done()
		}
		ctx.Cancel()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("waitFirst=%v: Err %v", waitFirst, ctx.Err())
		}
		<-ctx.Done()
	}
}

// TestDerivedContexts checks that contexts made from the lazy one end with
// it: the standard library links them by Done and Value.
func TestDerivedContexts(t *testing.T) {
	t.Parallel()
	ctx := deadline.New(t.Context(), 10*time.Millisecond)
	defer ctx.Cancel()
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	stopped := make(chan struct{})
	context.AfterFunc(ctx, func() { close(stopped) })
	<-child.Done()
	<-stopped
	if !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("child Err() = %v", child.Err())
	}
}

func TestSoonerParentDeadline(t *testing.T) {
	t.Parallel()
	parent, cancelParent := context.WithTimeout(t.Context(), time.Minute)
	defer cancelParent()
	want, _ := parent.Deadline()
	if ctx := deadline.New(parent, time.Hour); ctx != nil {
		t.Fatalf("New under a parent that ends sooner = %v, want nil", ctx)
	}
	ctx := deadline.New(parent, time.Second)
	defer ctx.Cancel()
	if got, _ := ctx.Deadline(); !got.Before(want) {
		t.Fatalf("Deadline() = %v, want before the parent's %v", got, want)
	}
}

// TestInitAt checks that InitAt takes the deadline it is given, as Init
// takes one from its timeout, and declines one no sooner than the parent's.
func TestInitAt(t *testing.T) {
	t.Parallel()
	parent, cancelParent := context.WithTimeout(t.Context(), time.Minute)
	defer cancelParent()
	var later deadline.Ctx
	if deadline.InitAt(&later, parent, time.Now().Add(time.Hour)) {
		t.Fatal("InitAt with a deadline after the parent's = true, want false")
	}
	var c deadline.Ctx
	want := time.Now().Add(20 * time.Millisecond)
	if !deadline.InitAt(&c, parent, want) {
		t.Fatal("InitAt with a deadline before the parent's = false, want true")
	}
	defer c.Cancel()
	if got, ok := c.Deadline(); !ok || !got.Equal(want) {
		t.Fatalf("Deadline() = %v, %v; want %v", got, ok, want)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err() before the deadline = %v", err)
	}
	time.Sleep(time.Until(want) + 10*time.Millisecond)
	if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err() after the deadline = %v, want DeadlineExceeded", err)
	}
}

// TestSoonerParentAllocatesNothing checks that New makes nothing when it
// returns nil (kit's deadlines and pubsub call it on every call). Not
// parallel: AllocsPerRun counts the whole process's allocations.
func TestSoonerParentAllocatesNothing(t *testing.T) {
	parent, cancelParent := context.WithTimeout(t.Context(), time.Minute)
	defer cancelParent()
	if n := testing.AllocsPerRun(100, func() { sink = deadline.New(parent, time.Hour) }); n != 0 {
		t.Errorf("New under a parent that ends sooner allocates %v times, want 0", n)
	}
}

// sink keeps what New returns where the compiler cannot see it unused.
var sink *deadline.Ctx

// TestConcurrentUse races Done, Err, Value and Cancel (run with -race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	for range 100 {
		ctx := deadline.New(t.Context(), time.Millisecond)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				switch i {
				case 0:
					<-ctx.Done()
				case 1:
					_ = ctx.Err()
					_ = ctx.Value(key{})
				case 2:
					ctx.Cancel()
				case 3:
					_ = context.Cause(ctx)
				}
			})
		}
		wg.Wait()
		<-ctx.Done()
		if ctx.Err() == nil {
			t.Fatal("Err() nil after Done")
		}
	}
}

// BenchmarkNew compares a call's deadline that nothing waits on
// with context.WithTimeout's, under a cancelable parent as a server's
// request context is.
func BenchmarkNew(b *testing.B) {
	parent, cancel := context.WithCancel(b.Context())
	defer cancel()
	b.Run("context", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(parent, time.Second)
			_ = ctx.Err()
			cancel()
		}
	})
	b.Run("lazy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx := deadline.New(parent, time.Second)
			_ = ctx.Err()
			ctx.Cancel()
		}
	})
}

// Err never changes once it said the context ended, as the context.Context
// contract asks ("successive calls to Err return the same error"):
// whichever of the deadline, the parent's cancellation and Cancel it saw
// first stays its answer, also after Done makes the real context.
func TestErrDoesNotChange(t *testing.T) {
	t.Parallel()
	type step func(c *deadline.Ctx, cancelParent context.CancelFunc)
	cancel := func(c *deadline.Ctx, _ context.CancelFunc) { c.Cancel() }
	parent := func(_ *deadline.Ctx, cancelParent context.CancelFunc) { cancelParent() }
	done := func(c *deadline.Ctx, _ context.CancelFunc) { c.Done() }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"deadline, Cancel, Done", []step{cancel, done}},
		{"deadline, parent canceled, Done", []step{parent, done}},
		{"deadline, Done, Cancel", []step{done, cancel}},
		{"deadline, parent canceled, Cancel, Done", []step{parent, cancel, done}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, cancelParent := newUnderCancel(t)
			time.Sleep(2 * time.Millisecond) // the deadline passes, unseen
			if err := c.Err(); err != context.DeadlineExceeded {
				t.Fatalf("Err after the deadline = %v; want DeadlineExceeded", err)
			}
			for i, s := range tc.steps {
				s(c, cancelParent)
				if err := c.Err(); err != context.DeadlineExceeded {
					t.Errorf("Err after step %d = %v; want DeadlineExceeded still", i+1, err)
				}
			}
		})
	}
}

// TestCauseAgreesWithErr checks that once Err has answered, the real
// context that a later Done makes gives the same error as its cause, as
// context.WithTimeout's does: whatever the parent or the clock did since,
// context.Cause of the context and of a context derived from it is Err.
func TestCauseAgreesWithErr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(c *deadline.Ctx, cancelParent context.CancelFunc)
		want error
	}{
		{"Cancel, deadline passes, Done", func(c *deadline.Ctx, _ context.CancelFunc) {
			c.Cancel()
			time.Sleep(2 * time.Millisecond)
		}, context.Canceled},
		{"deadline seen, parent canceled, Done", func(c *deadline.Ctx, cancelParent context.CancelFunc) {
			time.Sleep(2 * time.Millisecond)
			_ = c.Err()
			cancelParent()
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, cancelParent := newUnderCancel(t)
			tc.end(c, cancelParent)
			<-c.Done()
			child, cancelChild := context.WithCancel(c)
			defer cancelChild()
			if err, cause, childCause := c.Err(), context.Cause(c), context.Cause(child); err != tc.want || cause != tc.want || childCause != tc.want {
				t.Errorf("Err %v, Cause %v, a derived context's Cause %v; want %v for all", err, cause, childCause, tc.want)
			}
		})
	}
}

// TestCauseBeforeDoneAgreesWithErr checks that context.Cause agrees with
// an Err that said the context ended before anything called Done, as
// context.WithTimeout's does, when the parent then ends with a cause of
// its own (kit's shutdown cuts calls so): Cause gave the parent's.
func TestCauseBeforeDoneAgreesWithErr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(c *deadline.Ctx)
		want error
	}{
		{"Cancel", func(c *deadline.Ctx) { c.Cancel() }, context.Canceled},
		{"deadline seen", func(c *deadline.Ctx) {
			time.Sleep(2 * time.Millisecond)
			_ = c.Err()
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, cancelParent := context.WithCancelCause(context.Background())
			c := deadline.New(p, time.Millisecond)
			t.Cleanup(func() { c.Cancel(); cancelParent(nil) })
			tc.end(c)
			cancelParent(errors.New("the parent's cause"))
			if err, cause := c.Err(), context.Cause(c); err != tc.want || cause != tc.want {
				t.Errorf("Err %v, Cause %v; want %v for both", err, cause, tc.want)
			}
		})
	}
}

// TestStressErrAndCauseUnderRaces runs Err, Done, Cancel, context.Cause and
// the parent's cancellation at once around the deadline, many times: Err
// never changes once it said the context ended, and once Done is closed
// Err, context.Cause and a derived context's cause agree.
func TestStressErrAndCauseUnderRaces(t *testing.T) {
	t.Parallel()
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		p, cancelParent := context.WithCancel(context.Background())
		c := deadline.New(p, time.Duration(i%50)*time.Microsecond+time.Microsecond)
		var first atomic.Pointer[error]
		var wg sync.WaitGroup
		for g := range 5 {
			wg.Go(func() {
				for range 20 {
					switch g {
					case 0:
						select {
						case <-c.Done():
						default:
						}
					case 1:
						if i%3 == 0 {
							cancelParent()
						}
					case 2:
						if i%5 == 0 {
							c.Cancel()
						}
					case 3:
						_ = context.Cause(c)
					}
					if err := c.Err(); err != nil {
						if !first.CompareAndSwap(nil, &err) && *first.Load() != err {
							t.Errorf("round %d: Err changed from %v to %v", i, *first.Load(), err)
						}
					}
				}
			})
		}
		wg.Wait()
		c.Cancel()
		<-c.Done()
		child, cancelChild := context.WithCancel(c)
		if err, cause, childCause := c.Err(), context.Cause(c), context.Cause(child); err != cause || err != childCause {
			t.Errorf("round %d: Err %v, Cause %v, a derived context's Cause %v", i, err, cause, childCause)
		}
		cancelChild()
		cancelParent()
	}
}

// newUnderCancel returns a context of deadline.New with a 1ms timeout, and
// the cancel of its parent; both are released when t ends.
func newUnderCancel(t *testing.T) (*deadline.Ctx, context.CancelFunc) {
	t.Helper()
	p, cancelParent := context.WithCancel(context.Background())
	c := deadline.New(p, time.Millisecond)
	t.Cleanup(func() { c.Cancel(); cancelParent() })
	return c, cancelParent
}
