package kit

import (
	"context"
	"testing"
	"time"
)

// TestAtLeastGrace: the trace flush of Close and of Run's shutdown gets
// the caller's context when it leaves a second or more, or has no deadline
// at all (Close(context.Background()) waits as long as the flush takes),
// and a second of its own when it has less or is done. A context without
// a deadline was cut to a second (its zero deadline lies in the past), and
// one cancelled before its deadline got none.
func TestAtLeastGrace(t *testing.T) {
	t.Parallel()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	far, cancelFar := context.WithTimeout(context.Background(), time.Hour)
	t.Cleanup(cancelFar)
	near, cancelNear := context.WithTimeout(context.Background(), time.Millisecond)
	t.Cleanup(cancelNear)
	cancelled, cancelCancelled := context.WithTimeout(context.Background(), time.Hour)
	cancelCancelled()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		given bool // the caller's context is returned
	}{
		{name: "no deadline", ctx: context.Background(), given: true},
		{name: "an hour left", ctx: far, given: true},
		{name: "a millisecond left", ctx: near, given: false},
		{name: "done without a deadline", ctx: done, given: false},
		{name: "cancelled with an hour left", ctx: cancelled, given: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := atLeastGrace(tc.ctx)
			defer cancel()
			if given := ctx == tc.ctx; given != tc.given {
				deadline, ok := ctx.Deadline()
				t.Fatalf("atLeastGrace returned the caller's context: %t, want %t (deadline %v in %v)", given, tc.given, ok, time.Until(deadline))
			}
			if !tc.given {
				if deadline, ok := ctx.Deadline(); !ok || ctx.Err() != nil || time.Until(deadline) > closeGrace {
					t.Errorf("the grace's context: deadline %t in %v, err %v; want at most %v left, not done", ok, time.Until(deadline), ctx.Err(), closeGrace)
				}
			}
		})
	}
}
