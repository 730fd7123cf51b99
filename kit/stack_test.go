package kit_test

import (
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// stackMarks serves a handler that reports kit.StackMark of each request,
// and returns a function that makes a request with a client and returns
// the request's mark.
func stackMarks(t *testing.T) (*kittest.Server, func(*http.Client) uintptr) {
	t.Helper()
	marks := make(chan uintptr, 1)
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount("/stack", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			marks <- kit.StackMark(r)
		}))
	})
	return srv, func(c *http.Client) uintptr {
		t.Helper()
		res, err := c.Get(srv.URL + "/stack")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return <-marks
	}
}

// kit.Server grows an HTTP/1.1 connection's stack through the connection's
// own mark (see growConnStack), which its next request finds; HTTP/2
// requests do not use it.
func TestServerGrowsHTTP1StacksPerConnection(t *testing.T) {
	t.Parallel()
	srv, get := stackMarks(t)
	// A GC between the two requests may shrink the stack, which the second
	// then grows again: one pair in a few must find the first's mark.
	var first, second uintptr
	for range 10 {
		if first, second = get(srv.HTTP1Client()), get(srv.HTTP1Client()); first == 0 || second == first {
			break
		}
	}
	if first == 0 || second != first {
		t.Errorf("HTTP/1.1 on one connection: marks %#x, then %#x; want the same, not 0", first, second)
	}
	if h2 := get(srv.HTTP2Client()); h2 != 0 {
		t.Errorf("HTTP/2: mark %#x, want none", h2)
	}
}

// The garbage collector does not shrink the stack of an HTTP/1.1
// connection's goroutine while it waits for its next request, so the next
// request need not grow it again (see batchconn's readDeep): the stack has
// not moved, and the request finds the mark the first one left.
func TestHTTP1StackKeptWhileIdle(t *testing.T) {
	t.Parallel()
	srv, get := stackMarks(t)
	first := get(srv.HTTP1Client())
	for range 3 { // the connection's goroutine is then waiting in a read
		time.Sleep(10 * time.Millisecond)
		runtime.GC()
	}
	if second := get(srv.HTTP1Client()); first == 0 || second != first {
		t.Errorf("marks %#x, then %#x after GCs: the idle connection's stack moved (was shrunk)", first, second)
	}
}
