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
