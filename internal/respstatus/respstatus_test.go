package respstatus_test

import (
	"errors"
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
