package kit

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
)

func TestDateHeaderAt(t *testing.T) {
	t.Parallel()
	var d dateHeader
	now := time.Date(2026, 12, 6, 18, 30, 15, 100, time.FixedZone("CET", 3600))
	first := d.at(now)
	if want := "Sun, 06 Dec 2026 17:30:15 GMT"; len(first) != 1 || first[0] != want {
		t.Fatalf("at = %q, want [%q]", first, want)
	}
	if cap(first) != 1 {
		t.Errorf("cap = %d, want 1: an Add to one response's header would write to the next's", cap(first))
	}
	if again := d.at(now.Add(900 * time.Millisecond)); &again[0] != &first[0] {
		t.Error("a second value made within the same second")
	}
	if next := d.at(now.Add(time.Second)); next[0] != "Sun, 06 Dec 2026 17:30:16 GMT" {
		t.Errorf("a second later: %q", next)
	}
}

// TestServiceHandlerDatesUnaryCalls checks that kit, not net/http, writes
// the Date of a unary call's response (net/http writes one only when the
// handler set none; httptest's recorder writes none), and leaves a
// stream's to net/http.
func TestServiceHandlerDatesUnaryCalls(t *testing.T) {
	t.Parallel()
	service := pingv1.File_connectkit_ping_v1_ping_proto.Services().ByName("PingService")
	var d dateHeader
	h := serviceHandler(service, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), bodyLimits{}, &d)
	for _, tc := range []struct {
		method string
		dated  bool
	}{{"Ping", true}, {"CountUp", false}, {"CumSum", false}} {
		rec := httptest.NewRecorder()
		before := time.Now().Truncate(time.Second)
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/connectkit.ping.v1.PingService/"+tc.method, strings.NewReader("")))
		date := rec.Header().Values("Date")
		if !tc.dated {
			if len(date) != 0 {
				t.Errorf("%s: Date %q, want none of kit's", tc.method, date)
			}
			continue
		}
		if len(date) != 1 {
			t.Fatalf("%s: Date %q, want one", tc.method, date)
		}
		at, err := http.ParseTime(date[0])
		if err != nil || at.Before(before) || at.After(time.Now()) {
			t.Errorf("%s: Date %q (%v), want this second's", tc.method, date[0], err)
		}
	}
}
