package kit

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCallerTimeout(t *testing.T) {
	for _, tc := range []struct {
		header, value string
		want          time.Duration // 0: none
	}{
		{"Grpc-Timeout", "5S", 5 * time.Second},
		{"Grpc-Timeout", "250m", 250 * time.Millisecond},
		{"Grpc-Timeout", "2H", 2 * time.Hour},
		{"Grpc-Timeout", "99999999n", 99999999},
		{"Grpc-Timeout", "99999999H", 0},  // too long to count: none, as connect has it
		{"Grpc-Timeout", "123456789S", 0}, // more than 8 digits
		{"Grpc-Timeout", "5s", 0},
		{"Grpc-Timeout", "S", 0},
		{"Grpc-Timeout", "0S", 0},
		{"Grpc-Timeout", "-1S", 0},
		{"Connect-Timeout-Ms", "1500", 1500 * time.Millisecond},
		{"Connect-Timeout-Ms", "9999999999", 9999999999 * time.Millisecond},
		{"Connect-Timeout-Ms", "99999999999", 0},
		{"Connect-Timeout-Ms", "0", 0},
		{"Connect-Timeout-Ms", "1.5", 0},
		{"X-Other", "5", 0},
	} {
		h := http.Header{}
		h.Set(tc.header, tc.value)
		got, ok := callerTimeout(h)
		if ok != (tc.want != 0) || got != tc.want {
			t.Errorf("%s: %s = %v, %v; want %v", tc.header, tc.value, got, ok, tc.want)
		}
	}
}

// deadlines1 records the deadlines set on an HTTP/1.1 ResponseWriter.
type deadlines1 struct {
	http.ResponseWriter
	read, write time.Time
}

func (d *deadlines1) SetReadDeadline(t time.Time) error  { d.read = t; return nil }
func (d *deadlines1) SetWriteDeadline(t time.Time) error { d.write = t; return nil }

// Over HTTP/1.1 a Connect GET's response is bounded by the connection's
// write deadline, which net/http clears once the response is written: no
// timer, and no read deadline, since there is no body to read.
func TestGuardResponseOverHTTP1SetsTheWriteDeadline(t *testing.T) {
	t.Parallel()
	w := &deadlines1{ResponseWriter: httptest.NewRecorder()}
	before := time.Now()
	if g := guardResponse(w, httptest.NewRequest(http.MethodGet, "/", nil), time.Minute); g != nil {
		g.release()
		t.Error("guardResponse armed a timer over HTTP/1.1")
	}
	if w.write.Before(before.Add(time.Minute)) || w.write.After(time.Now().Add(time.Minute)) || !w.read.IsZero() {
		t.Errorf("write deadline %v (want now+1m), read deadline %v (want none)", w.write, w.read)
	}
}

// TestBodyTimerDueAtOnce arms an HTTP/2 request's body timer for a body
// whose time is already up (a client's deadline of a nanosecond,
// "Grpc-Timeout: 1n"): its first expiry, which may run before guardBody
// has stored the timer, re-arms that timer for the response. It must not
// find it missing (a nil dereference on the timer's goroutine ends the
// process) nor race with its store.
func TestBodyTimerDueAtOnce(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.ProtoMajor, r.ProtoMinor = 2, 0
	for range 10000 {
		g := guardBody(httptest.NewRecorder(), r, time.Nanosecond, time.Hour)
		time.Sleep(time.Microsecond)
		g.release()
	}
}

// TestBodyTimerReused checks that an HTTP/2 call's body timer costs no
// allocation once a call released one before it fired (bodyTimers). Not
// parallel: testing.AllocsPerRun panics during a parallel test.
// AllocsPerRun counts every allocation of the process, also those of
// goroutines other tests left running (servers closing, timers): these
// only add to the count, so the least of a few measures is still an upper
// bound of guardBody's own, and without the reuse each measure is ≥ 1.
func TestBodyTimerReused(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.ProtoMajor, r.ProtoMinor = 2, 0
	w := httptest.NewRecorder()
	guardBody(w, r, time.Hour, time.Hour).release()
	// Under -race, sync.Pool drops a Put in four: 0.75 allocations a call.
	var measures []float64
	for range 5 {
		n := testing.AllocsPerRun(1000, func() { guardBody(w, r, time.Hour, time.Hour).release() })
		if n < 1 {
			return
		}
		measures = append(measures, n)
	}
	t.Errorf("guardBody and release: %v allocations a call in each of %d measures, want 0", measures, len(measures))
}

// deadlines2 tells, on a channel, the read deadlines set on an HTTP/2
// stream's ResponseWriter.
type deadlines2 struct {
	http.ResponseWriter
	read chan time.Time
}

func (d *deadlines2) SetReadDeadline(t time.Time) error { d.read <- t; return nil }

// TestBodyTimerReusedForgetsItsCall checks that a body timer taken from
// bodyTimers acts on its new call alone: the call that released it gets
// no deadline from it, and neither does the new call before its time.
func TestBodyTimerReusedForgetsItsCall(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.ProtoMajor, r.ProtoMinor = 2, 0
	for range 100 {
		first := &deadlines2{ResponseWriter: httptest.NewRecorder(), read: make(chan time.Time, 1)}
		guardBody(first, r, time.Hour, 0).release()
		second := &deadlines2{ResponseWriter: httptest.NewRecorder(), read: make(chan time.Time, 1)}
		start := time.Now()
		g := guardBody(second, r, time.Millisecond, 0)
		select {
		case d := <-second.read:
			if d.Before(start.Add(time.Millisecond)) {
				t.Errorf("read deadline %v after arming, want ≥ 1ms", d.Sub(start))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the second call's body timer never set its read deadline")
		}
		g.release()
		select {
		case <-first.read:
			t.Fatal("the first call's writer got a read deadline after its handler returned")
		default:
		}
	}
}
