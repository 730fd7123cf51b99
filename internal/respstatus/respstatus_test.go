package respstatus_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
