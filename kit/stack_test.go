package kit_test

import (
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// served is what stackMarks' handler saw of a request.
type served struct {
	mark      uintptr // kit.StackMark
	growths   uint32  // kit.StackGrowths
	goroutine string  // the id of the goroutine that served it
}

// stackMarks serves a handler that reports kit.StackMark and
// kit.StackGrowths of each request, and returns a function that makes a
// request with a client and returns what the handler saw.
func stackMarks(t *testing.T) (*kittest.Server, func(*http.Client) served) {
	t.Helper()
	seen := make(chan served, 1)
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount("/stack", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			seen <- served{kit.StackMark(r), kit.StackGrowths(r), kit.GoroutineID()}
		}))
	})
	return srv, func(c *http.Client) served {
		t.Helper()
		res, err := c.Get(srv.URL + "/stack")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return <-seen
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
		first = get(srv.HTTP1Client()).mark
		if second = get(srv.HTTP1Client()).mark; first == 0 || second == first {
			break
		}
	}
	if first == 0 || second != first {
		t.Errorf("HTTP/1.1 on one connection: marks %#x, then %#x; want the same, not 0", first, second)
	}
	if h2 := get(srv.HTTP2Client()); h2.mark != 0 || h2.growths != 0 {
		t.Errorf("HTTP/2: mark %#x, %d growths; want none", h2.mark, h2.growths)
	}
}

// The garbage collector does not shrink the stack of an HTTP/1.1
// connection's goroutine while it waits for its next request, so the next
// request need not grow it again (see batchconn's readDeep): kit grows
// the stack for the first request only. That the next request finds the
// first one's mark does not show it: a stack shrunk while waiting, then
// grown again, can land where the first was, a 16 KiB stack freed by the
// shrink and taken again (seen in every second round on one server).
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
// do at its next preemption.
//
// Such a pending shrink can also come from before the round: the runtime
// keeps it in the g, and does not clear it when the goroutine exits
// (runtime.gdestroy, Go 1.26), so a goroutine made later from that g (the
// connection's) shrinks its stack at its first synchronous preemption,
// with no GC since it started: one that WaitParked's stop-the-world can
// bring about while the goroutine runs between the first response and
// its wait. Nothing outside the runtime tells such a round from one in
// which a GC shrank the waiting stack, so a round whose second request
// grew the stack fails the test only if the two rounds before it did too
// (about 2 runs in 1 000 failed at GOGC=1 when one round decided, so
// about 1 in 10^8 would now). A goroutine that waits using under a
// quarter of its 16 KiB has its stack halved by every GC that finds it
// waiting, and fails every round. Under -race the waiting goroutine uses
// over 4 KiB of stack without readDeep's pad too (4 544 bytes, Go 1.26):
// batchconn's TestReadDeepReservesItsPad checks the pad.
func TestHTTP1StackKeptWhileIdle(t *testing.T) {
	t.Parallel()
	_, get := stackMarks(t)
	const rounds = 3 // grown again in a row, to fail
	grewAgain := 0
	for {
		tr := &http.Transport{}
		c := &http.Client{Transport: tr}
		n := kit.GCCycles()
		first := get(c)
		kit.WaitParked(t, first.goroutine, "IO wait", "github.com/connectkit/connectkit/internal/batchconn.(*conn).readDeep")
		alone := kit.GCAlone(n) // this GC itself finds the goroutine waiting
		runtime.GC()
		n = kit.GCCycles()
		second := get(c)
		alone = kit.GCAlone(n) && alone
		tr.CloseIdleConnections()
		switch {
		case !alone:
			continue
		case first.growths != 1:
			t.Fatalf("first request: stack grown %d times, want once", first.growths)
		case second.growths == first.growths:
			return
		}
		if grewAgain++; grewAgain < rounds {
			t.Logf("round %d: the second request grew the stack again (marks %#x, then %#x); trying again on a new connection", grewAgain, first.mark, second.mark)
			continue
		}
		t.Errorf("the request after GCs grew the idle connection's stack again (it was shrunk while waiting), in %d rounds in a row (marks %#x, then %#x)", rounds, first.mark, second.mark)
		return
	}
}
