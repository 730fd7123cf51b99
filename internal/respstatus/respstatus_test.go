package respstatus_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/respstatus"
)

// A Writer records the final status, not an informational one before it,
// and keeps the start of an error's body only, at most Kept bytes of it;
// Reset forgets what it recorded.
func TestWriter(t *testing.T) {
	t.Parallel()
	var w respstatus.Writer
	rec := httptest.NewRecorder()
	w.Reset(rec, false)
	w.WriteHeader(http.StatusEarlyHints)
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(strings.Repeat("a", respstatus.Kept-1)))
	_, _ = w.Write([]byte("bc"))
	if w.Status() != http.StatusBadRequest {
		t.Errorf("Status() = %d, want 400", w.Status())
	}
	if got, want := string(w.Body()), strings.Repeat("a", respstatus.Kept-1)+"b"; got != want {
		t.Errorf("Body() = %d bytes ending %q, want %d ending %q", len(got), got[len(got)-2:], len(want), want[len(want)-2:])
	}
	if rec.Body.Len() != respstatus.Kept+1 {
		t.Errorf("the wrapped writer got %d bytes, want %d", rec.Body.Len(), respstatus.Kept+1)
	}

	w.Reset(httptest.NewRecorder(), false)
	_, _ = w.Write([]byte("ok"))
	if w.Status() != http.StatusOK || len(w.Body()) != 0 {
		t.Errorf("a body without a status: Status() = %d, Body() = %q; want 200 and nothing kept", w.Status(), w.Body())
	}
}

// A Connect stream's Writer keeps a body that starts with the message
// ending the stream, written as connect writes it (the envelope's prefix,
// then its data), and not one that starts with a message of data.
func TestWriterKeepsTheEndOfAStream(t *testing.T) {
	t.Parallel()
	var w respstatus.Writer
	w.Reset(httptest.NewRecorder(), true)
	_, _ = w.Write([]byte{0x02, 0, 0, 0, 2})
	_, _ = w.Write([]byte("{}"))
	if got := string(w.Body()); got != "\x02\x00\x00\x00\x02{}" {
		t.Errorf("Body() = %q, want the end of the stream", got)
	}
	w.Reset(httptest.NewRecorder(), true)
	_, _ = w.Write([]byte{0, 0, 0, 0, 2})
	_, _ = w.Write([]byte("{}"))
	_, _ = w.Write([]byte{0x02, 0, 0, 0, 2})
	if len(w.Body()) != 0 {
		t.Errorf("Body() = %q after a message of data, want nothing kept", w.Body())
	}
	w.Reset(httptest.NewRecorder(), false)
	_, _ = w.Write([]byte{0x02, 0, 0, 0, 2})
	if len(w.Body()) != 0 {
		t.Errorf("Body() = %q of a unary 200, want nothing kept", w.Body())
	}
}

// The ResponseWriter that Reset returns ends with Release: a write through
// it after its handler returned fails and reaches neither the response it
// wrapped nor the one the Writer wraps next, nor what the Writer records.
func TestWriterCallEndsWithRelease(t *testing.T) {
	t.Parallel()
	var w respstatus.Writer
	first := httptest.NewRecorder()
	late := w.Reset(first, false)
	_, _ = late.Write([]byte("one"))
	w.Release()
	next := httptest.NewRecorder()
	current := w.Reset(next, false)
	current.WriteHeader(http.StatusBadRequest)
	if _, err := late.Write([]byte("late")); !errors.Is(err, respstatus.ErrHandlerReturned) {
		t.Errorf("late Write: %v, want ErrHandlerReturned", err)
	}
	late.WriteHeader(http.StatusTeapot)
	late.Header().Set("Late", "1")
	if err := http.NewResponseController(late).SetWriteDeadline(time.Now()); err == nil {
		t.Error("late SetWriteDeadline succeeded")
	}
	_, _ = current.Write([]byte("two"))
	if first.Body.String() != "one" || next.Body.String() != "two" || next.Code != http.StatusBadRequest || next.Header().Get("Late") != "" {
		t.Errorf("responses %q and %d %q %v, want \"one\" and 400 \"two\"", first.Body, next.Code, next.Body, next.Header())
	}
	if w.Status() != http.StatusBadRequest || string(w.Body()) != "two" {
		t.Errorf("recorded %d %q, want 400 \"two\"", w.Status(), w.Body())
	}
}

// failingFlusher is a ResponseWriter whose flush fails, as net/http's do
// once the client is gone.
type failingFlusher struct{ *httptest.ResponseRecorder }

var errGone = errors.New("client gone")

func (failingFlusher) FlushError() error { return errGone }

// http.ResponseController's Flush through the ResponseWriter that Reset
// returns reports the wrapped writer's error, as it does on net/http's own.
func TestWriterCallFlushReportsErrors(t *testing.T) {
	t.Parallel()
	var w respstatus.Writer
	rw := w.Reset(failingFlusher{httptest.NewRecorder()}, false)
	if err := http.NewResponseController(rw).Flush(); !errors.Is(err, errGone) {
		t.Errorf("Flush = %v, want the wrapped writer's %v", err, errGone)
	}
	w.Release()
	if err := http.NewResponseController(rw).Flush(); !errors.Is(err, respstatus.ErrHandlerReturned) {
		t.Errorf("Flush once released = %v, want ErrHandlerReturned", err)
	}
}

// optionalWriter is a ResponseWriter with the optional interfaces of
// net/http's, HTTP/1.x's and HTTP/2's at once, which count their calls.
type optionalWriter struct {
	*httptest.ResponseRecorder
	hijacks, readFroms, pushes int
}

func (o *optionalWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	o.hijacks++
	return nil, nil, nil
}

func (o *optionalWriter) ReadFrom(r io.Reader) (int64, error) {
	o.readFroms++
	return io.Copy(o.ResponseRecorder, r)
}

func (o *optionalWriter) Push(string, *http.PushOptions) error {
	o.pushes++
	return nil
}

// The ResponseWriter that Reset returns has exactly the optional
// interfaces of the one it wraps among Hijacker, ReaderFrom and Pusher,
// and passes their calls on until Release, after which they fail. An
// error's body written by ReadFrom is kept, as Write's is.
func TestWriterCallOptionalInterfaces(t *testing.T) {
	t.Parallel()
	var w respstatus.Writer
	if rw := w.Reset(httptest.NewRecorder(), false); hasAny(rw) {
		t.Errorf("wrapping a recorder: %T has an optional interface", rw)
	}
	o := &optionalWriter{ResponseRecorder: httptest.NewRecorder()}
	rw := w.Reset(o, false)
	hj, okH := rw.(http.Hijacker)
	rf, okR := rw.(io.ReaderFrom)
	p, okP := rw.(http.Pusher)
	if !okH || !okR || !okP {
		t.Fatalf("%T: Hijacker %t, ReaderFrom %t, Pusher %t; want all", rw, okH, okR, okP)
	}
	_, _, _ = hj.Hijack()
	_ = p.Push("/x", nil)
	_, _ = rf.ReadFrom(strings.NewReader("ok"))
	rw.WriteHeader(http.StatusNotFound) // after a body: ignored by net/http
	if o.hijacks != 1 || o.pushes != 1 || o.readFroms != 1 || w.Status() != http.StatusOK || len(w.Body()) != 0 {
		t.Errorf("calls passed on: %d %d %d, recorded %d %q; want 1 1 1, 200 and nothing kept", o.hijacks, o.pushes, o.readFroms, w.Status(), w.Body())
	}
	w.Release()
	if _, _, err := hj.Hijack(); !errors.Is(err, respstatus.ErrHandlerReturned) {
		t.Errorf("Hijack once released: %v", err)
	}
	if err := p.Push("/x", nil); !errors.Is(err, respstatus.ErrHandlerReturned) {
		t.Errorf("Push once released: %v", err)
	}
	if _, err := rf.ReadFrom(strings.NewReader("late")); !errors.Is(err, respstatus.ErrHandlerReturned) {
		t.Errorf("ReadFrom once released: %v", err)
	}

	o = &optionalWriter{ResponseRecorder: httptest.NewRecorder()}
	rw = w.Reset(o, false)
	rw.WriteHeader(http.StatusBadRequest)
	_, _ = rw.(io.ReaderFrom).ReadFrom(strings.NewReader(`{"code":"invalid_argument"}`))
	if string(w.Body()) != `{"code":"invalid_argument"}` || o.Body.String() != `{"code":"invalid_argument"}` {
		t.Errorf("an error's body through ReadFrom: kept %q, sent %q", w.Body(), o.Body)
	}
}

// hasAny says whether rw has Hijacker, ReaderFrom or Pusher.
func hasAny(rw http.ResponseWriter) bool {
	_, h := rw.(http.Hijacker)
	_, r := rw.(io.ReaderFrom)
	_, p := rw.(http.Pusher)
	return h || r || p
}

// Each combination of Hijacker, ReaderFrom and Pusher that a wrapped
// writer has, the ResponseWriter that Reset returns has, and no other.
func TestWriterCallInterfaceCombinations(t *testing.T) {
	t.Parallel()
	o := &optionalWriter{ResponseRecorder: httptest.NewRecorder()}
	type rw = http.ResponseWriter
	for _, wrapped := range []http.ResponseWriter{
		struct{ rw }{o},
		struct {
			rw
			http.Hijacker
		}{o, o},
		struct {
			rw
			io.ReaderFrom
		}{o, o},
		struct {
			rw
			http.Pusher
		}{o, o},
		struct {
			rw
			http.Hijacker
			io.ReaderFrom
		}{o, o, o},
		struct {
			rw
			http.Hijacker
			http.Pusher
		}{o, o, o},
		struct {
			rw
			io.ReaderFrom
			http.Pusher
		}{o, o, o},
		o,
	} {
		for _, spare := range []*respstatus.Spare{nil, new(respstatus.Spare)} {
			var w respstatus.Writer
			got := w.ResetIn(wrapped, false, spare)
			_, h := got.(http.Hijacker)
			_, r := got.(io.ReaderFrom)
			_, p := got.(http.Pusher)
			_, wantH := wrapped.(http.Hijacker)
			_, wantR := wrapped.(io.ReaderFrom)
			_, wantP := wrapped.(http.Pusher)
			if h != wantH || r != wantR || p != wantP {
				t.Errorf("wrapping %T (spare %t): Hijacker %t, ReaderFrom %t, Pusher %t; want %t %t %t", wrapped, spare != nil, h, r, p, wantH, wantR, wantP)
			}
			w.Release()
			if _, err := got.Write([]byte("late")); !errors.Is(err, respstatus.ErrHandlerReturned) {
				t.Errorf("wrapping %T (spare %t): a write once released: %v", wrapped, spare != nil, err)
			}
		}
	}
}

// ResetIn puts the ResponseWriter of net/http's HTTP/1.x ResponseWriter
// (Hijacker and ReaderFrom, no Pusher) in the spare it is given, without
// an allocation of its own, and that writer passes the call on. Not
// parallel: testing.AllocsPerRun.
func TestWriterResetInSpare(t *testing.T) {
	o := &optionalWriter{ResponseRecorder: httptest.NewRecorder()}
	var wrapped http.ResponseWriter = struct {
		http.ResponseWriter
		http.Hijacker
		io.ReaderFrom
	}{o, o, o}
	var w respstatus.Writer
	spare := new(respstatus.Spare)
	if allocs := testing.AllocsPerRun(100, func() {
		*spare = respstatus.Spare{}
		w.ResetIn(wrapped, false, spare)
		w.Release()
	}); allocs != 0 {
		t.Errorf("ResetIn with a spare: %.1f allocations; want 0", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		w.ResetIn(wrapped, false, nil)
		w.Release()
	}); allocs != 1 {
		t.Errorf("ResetIn without a spare: %.1f allocations; want 1", allocs)
	}
	rw := w.ResetIn(wrapped, false, new(respstatus.Spare))
	rw.WriteHeader(http.StatusTeapot)
	_, _ = rw.Write([]byte("short and stout"))
	w.Release()
	if w.Status() != http.StatusTeapot || string(w.Body()) != "short and stout" || o.Body.String() != "short and stout" {
		t.Errorf("through a spare: recorded %d %q, sent %q", w.Status(), w.Body(), o.Body)
	}
}
