package kit_test

import (
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// stackMarks serves a handler that reports kit.StackMark of each request,
// and returns a function that makes a request with a client and returns
// the request's mark and the id of the goroutine that served it.
func stackMarks(t *testing.T) (*kittest.Server, func(*http.Client) (uintptr, string)) {
	t.Helper()
	type served struct {
		mark      uintptr
		goroutine string
	}
	marks := make(chan served, 1)
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount("/stack", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			marks <- served{kit.StackMark(r), kit.GoroutineID()}
		}))
	})
	return srv, func(c *http.Client) (uintptr, string) {
		t.Helper()
		res, err := c.Get(srv.URL + "/stack")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		s := <-marks
		return s.mark, s.goroutine
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
		first, _ = get(srv.HTTP1Client())
		if second, _ = get(srv.HTTP1Client()); first == 0 || second == first {
			break
		}
	}
	if first == 0 || second != first {
		t.Errorf("HTTP/1.1 on one connection: marks %#x, then %#x; want the same, not 0", first, second)
	}
	if h2, _ := get(srv.HTTP2Client()); h2 != 0 {
		t.Errorf("HTTP/2: mark %#x, want none", h2)
	}
}

// The garbage collector does not shrink the stack of an HTTP/1.1
// connection's goroutine while it waits for its next request, so the next
// request need not grow it again (see batchconn's readDeep): the stack has
// not moved, and the request finds the mark the first one left.
//
// Only GCs that run while the goroutine waits in readDeep count. A GC
// from elsewhere (a parallel test's, or one the allocations started) may
// also find the goroutine shallow while it serves a request: after the
// client has the first response, it waits in net/http's abortPendingRead
// for the request's background read to end, ~1.9 KiB deep under -race,
// and a GC then shrinks its stack (the test failed about once in 40 runs
// so). A round in which another GC cycle ran from before the connection
// was opened to the goroutine's wait, or during the second request, is
// left out, and the test tries again on a new connection: a cycle that
// scanned the goroutine while it ran may also have left it a shrink to
// do at its next preemption. Under -race the waiting goroutine uses over
// 4 KiB of stack without readDeep's pad too (4 544 bytes, Go 1.26):
// batchconn's TestReadDeepReservesItsPad checks the pad.
func TestHTTP1StackKeptWhileIdle(t *testing.T) {
	t.Parallel()
	_, get := stackMarks(t)
	for {
		tr := &http.Transport{}
		c := &http.Client{Transport: tr}
		n := kit.GCCycles()
		first, conn := get(c)
		kit.WaitParked(t, conn, "IO wait", "github.com/connectkit/connectkit/internal/batchconn.(*conn).readDeep")
		alone := kit.GCAlone(n) // this GC itself finds the goroutine waiting
		runtime.GC()
		n = kit.GCCycles()
		second, _ := get(c)
		alone = kit.GCAlone(n) && alone
		tr.CloseIdleConnections()
		if !alone {
			continue
		}
		if first == 0 || second != first {
			t.Errorf("marks %#x, then %#x after GCs: the idle connection's stack moved (was shrunk)", first, second)
		}
		return
	}
}
