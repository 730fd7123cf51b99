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
	w.Reset(rec)
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

	w.Reset(httptest.NewRecorder())
	_, _ = w.Write([]byte("ok"))
	if w.Status() != http.StatusOK || len(w.Body()) != 0 {
		t.Errorf("a body without a status: Status() = %d, Body() = %q; want 200 and nothing kept", w.Status(), w.Body())
	}
}
