package kit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/connectkit/connectkit/internal/msgctx"
)

// TestShutdownCutOfAClientStreamOutlastsItsReadDeadline cuts a client
// stream by the shutdown just before streamCall sets the read deadline of
// the stream's own deadline: the cut's read deadline (now) must be the one
// left, so that a Receive waiting on the client ends at once. Registered
// before that read deadline, the cut set its own first, and the stream's
// (an hour away) then replaced it (aebe4e3).
func TestShutdownCutOfAClientStreamOutlastsItsReadDeadline(t *testing.T) {
	t.Parallel()
	rec := &readDeadlines{cut: make(chan struct{})}
	body := &streamBody{rc: http.NewResponseController(rec), sendStall: time.Minute}
	call, cut := context.WithCancelCause(context.WithValue(context.Background(), bodyControllerKey{}, body))
	defer cut(nil)
	ctx := &cutAtSecondDeadline{Context: call, at: time.Now().Add(time.Hour), cut: func() {
		cut(errCallsCut)
		select { // the cut, if registered by now, sets its read deadline
		case <-rec.cut:
		case <-time.After(100 * time.Millisecond):
		}
	}}
	conn := clientStreamConn{}
	err := deadlines{}.streamCall(ctx, conn, func(context.Context, connect.StreamingHandlerConn) error {
		for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait); time.Sleep(time.Millisecond) {
			if last := rec.last(); !last.IsZero() && !last.After(time.Now()) {
				return nil
			}
		}
		return errors.New("the stream's read deadline replaced the shutdown cut's")
	})
	if err != nil {
		t.Error(err)
	}
}

// cutAtSecondDeadline runs cut on the second call to Deadline, the one
// whose answer streamCall sets as the read deadline.
type cutAtSecondDeadline struct {
	context.Context
	at    time.Time
	calls int
	cut   func()
}

func (c *cutAtSecondDeadline) Deadline() (time.Time, bool) {
	if c.calls++; c.calls == 2 {
		c.cut()
	}
	return c.at, true
}

// readDeadlines is a ResponseWriter that records its read deadlines; cut
// is closed by the first one that is not in the future.
type readDeadlines struct {
	http.ResponseWriter
	cut chan struct{}

	mu       sync.Mutex
	deadline time.Time
	once     sync.Once
}

func (r *readDeadlines) SetReadDeadline(d time.Time) error {
	r.mu.Lock()
	r.deadline = d
	r.mu.Unlock()
	if !d.After(time.Now()) {
		r.once.Do(func() { close(r.cut) })
	}
	return nil
}

func (r *readDeadlines) last() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deadline
}

// clientStreamConn is a client stream's conn of which streamCall reads only
// the spec.
type clientStreamConn struct{ connect.StreamingHandlerConn }

func (clientStreamConn) Spec() connect.Spec {
	return connect.Spec{StreamType: connect.StreamTypeClient}
}

// TestCutByShutdown checks which errors of a call the shutdown cut reach
// its client as Unavailable: those of its context (as they are, wrapped,
// or as a connect code), not an Unknown error the handler made itself,
// which says that it cannot tell what happened: a client retrying on
// Unavailable could then do it twice (the example's create whose event
// was not confirmed).
func TestCutByShutdown(t *testing.T) {
	t.Parallel()
	ctx, cut := context.WithCancelCause(t.Context())
	cut(errCallsCut)
	for _, tc := range []struct {
		name string
		err  error
		want connect.Code
	}{
		{name: "the context's error", err: ctx.Err(), want: connect.CodeUnavailable},
		{name: "wrapped", err: fmt.Errorf("store: %w", ctx.Err()), want: connect.CodeUnavailable},
		{name: "canceled", err: connect.NewError(connect.CodeCanceled, ctx.Err()), want: connect.CodeUnavailable},
		{name: "deadline exceeded", err: connect.NewError(connect.CodeDeadlineExceeded, ctx.Err()), want: connect.CodeUnavailable},
		{name: "the handler's unknown", err: connect.NewError(connect.CodeUnknown, fmt.Errorf("saved, not confirmed: %w", ctx.Err())), want: connect.CodeUnknown},
		{name: "another code", err: connect.NewError(connect.CodeInternal, ctx.Err()), want: connect.CodeInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := connect.CodeOf(cutByShutdown(ctx, tc.err)); got != tc.want {
				t.Errorf("cutByShutdown(%v) is %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// messageRequest is a unary request that holds a msgctx.Info, as pubsub's
// deliveries do.
type messageRequest struct {
	*connect.Request[emptypb.Empty]
	info msgctx.Info
}

func (r *messageRequest) MessageInfo() *msgctx.Info { return &r.info }

// TestDeadlinesOfADelivery checks that a delivery's deadline is capped at
// maxUnary as an RPC's is, whether or not its msgctx.Info.Start lets the
// check skip the clock: a deadline at most maxUnary after Start passes as
// it is, one further from Start is measured from now.
func TestDeadlinesOfADelivery(t *testing.T) {
	t.Parallel()
	const maxUnary = 5 * time.Minute
	now := time.Now()
	for _, tc := range []struct {
		name          string
		start         time.Time
		deadlineIn    time.Duration // from now
		wantUnchanged bool
	}{
		{name: "within max of start", start: now, deadlineIn: time.Minute, wantUnchanged: true},
		{name: "started long ago, within max of now", start: now.Add(-time.Hour), deadlineIn: time.Minute, wantUnchanged: true},
		{name: "no start, within max of now", deadlineIn: time.Minute, wantUnchanged: true},
		{name: "beyond max of start and of now", start: now, deadlineIn: 10 * time.Minute},
		{name: "started long ago, beyond max of now", start: now.Add(-time.Hour), deadlineIn: 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := now.Add(tc.deadlineIn)
			ctx, cancel := context.WithDeadline(t.Context(), want)
			defer cancel()
			req := &messageRequest{Request: connect.NewRequest(&emptypb.Empty{}), info: msgctx.Info{Operation: msgctx.Process, Start: tc.start}}
			var got time.Time
			_, err := deadlines{unary: 30 * time.Second, maxUnary: maxUnary}.unaryCall(ctx, req,
				func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
					got, _ = ctx.Deadline()
					return nil, nil
				})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantUnchanged {
				if !got.Equal(want) {
					t.Errorf("deadline %v, want the delivery's own %v", got, want)
				}
			} else if limit := time.Now().Add(maxUnary); got.After(limit) {
				t.Errorf("deadline %v, want capped at %v from now (%v)", got, maxUnary, limit)
			}
		})
	}
}
