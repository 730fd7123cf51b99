package kit

import (
	"strings"
	"testing"
	"time"
)

// The rejected calls' lines are let through at rejectedLinesPerSecond a
// second; the first line of a later second says how many were held back.
func TestLineLimiter(t *testing.T) {
	t.Parallel()
	var l lineLimiter
	start := time.Unix(1000, 0)
	for i := range rejectedLinesPerSecond {
		if n, ok := l.allow(start.Add(time.Duration(i) * time.Millisecond)); !ok || n != 0 {
			t.Fatalf("line %d: allow = %d, %v; want 0, true", i, n, ok)
		}
	}
	for i := range 3 {
		if _, ok := l.allow(start.Add(900 * time.Millisecond)); ok {
			t.Fatalf("line %d over the limit let through", rejectedLinesPerSecond+i)
		}
	}
	if n, ok := l.allow(start.Add(time.Second)); !ok || n != 3 {
		t.Errorf("the next second's first line: allow = %d, %v; want 3, true", n, ok)
	}
	if n, ok := l.allow(start.Add(time.Second + time.Millisecond)); !ok || n != 0 {
		t.Errorf("its second line: allow = %d, %v; want 0, true", n, ok)
	}
}

// A 415's line quotes the request's content type, which its client
// chooses, up to maxLoggedContentType bytes.
func TestUnsupportedContentTypeIsBounded(t *testing.T) {
	t.Parallel()
	long := "application/grpc-web-text+" + strings.Repeat("x", 10_000)
	got := unsupportedContentType(long)
	want := `unsupported content type "` + long[:maxLoggedContentType] + `...": gRPC-Web's text mode`
	if !strings.HasPrefix(got, want) {
		t.Errorf("got %q, want it to start with %q", got, want)
	}
}
