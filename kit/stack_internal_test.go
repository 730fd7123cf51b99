package kit

import (
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// An HTTP/1.x connection's goroutine grows its stack for its first request
// and after GC shrank it, not for the requests in between.
//
// The goroutine keeps 5 KiB of frames all along, and calls growConnStack
// from under 4 KiB more (see growTwice): 9 KiB, over a quarter of the 32
// KiB stack that growStack leaves, so that a GC started elsewhere cannot
// shrink the stack between the calls of a pair (grew = [true true true
// false] was seen once, when they ran shallow). Waiting between the pairs
// it uses under a quarter of 32 KiB and over a quarter of 16: a GC halves
// its stack once, and the second pair runs on that 16 KiB stack, which
// was taken while the first was still in use, so its frames are at other
// addresses. Shrunk further, to 8 KiB, the stack had to grow again for
// the second pair, and the new one could end where the first ended, a
// 32 KiB span freed and reused for two 16 KiB stacks (grew = [true false
// false false], twice in 1 500 runs with GOGC=1). Its GC runs once the
// goroutine is parked on its channel (runtime.Stack): a GC that found it
// still running could put the shrink off to its next preemption.
func TestConnStackGrowsOnlyAfterAShrink(t *testing.T) {
	t.Parallel()
	if start := startingStackSize(); start > 32<<10 {
		t.Skipf("goroutines start with %d bytes of stack: 9 KiB would not keep it from shrinking", start)
	}
	id, resume := make(chan string, 1), make(chan struct{})
	got := make(chan [4]bool, 1)
	go func() { // a connection's goroutine, waiting for its next request in between
		var frames [5 << 10]byte
		keep(frames[:])
		id <- GoroutineID()
		var mark uintptr
		var grew [4]bool
		grew[0], grew[1] = growTwice(&mark)
		<-resume
		grew[2], grew[3] = growTwice(&mark)
		got <- grew
	}()
	WaitParked(t, <-id, "chan receive", "github.com/connectkit/connectkit/kit.TestConnStackGrowsOnlyAfterAShrink.func1")
	runtime.GC() // shrinks the waiting goroutine's stack, of which it uses little
	close(resume)
	if grew, want := <-got, [4]bool{true, false, true, false}; grew != want {
		t.Errorf("grew = %v; want %v (first call, again, after a GC, again)", grew, want)
	}
}

// growTwice calls growConnStack twice, from under a 4 KiB frame.
//
//go:noinline
func growTwice(mark *uintptr) (first, second bool) {
	var hold [4 << 10]byte
	keep(hold[:])
	first = growConnStack(mark)
	second = growConnStack(mark)
	return first, second
}

// growStack leaves a goroutine with a stack deep enough for ~12 KiB of
// frames: frames of that depth after it do not move the stack again. It
// fails if growStack's frame is optimized away (its pad is reserved on a
// branch that never runs, see bufUsed). A goroutine may start with the
// average stack the last GC scanned (the runtime's adaptivestackstart),
// and nothing tells growStack's frame then if that is 16 KiB already: the
// test skips rather than pass without checking.
func TestGrowStackReservesItsFrame(t *testing.T) {
	t.Parallel()
	before := startingStackSize()
	moved := make(chan bool, 1)
	go func() {
		growStack()
		before := stackMark()
		useStack(10) // ~10 KiB of frames
		moved <- stackMark() != before
	}()
	m := <-moved
	if start := max(before, startingStackSize()); start >= 16<<10 {
		t.Skipf("goroutines start with %d bytes of stack: growStack has nothing to grow", start)
	}
	if m {
		t.Error("the stack moved after growStack: it did not grow to 16 KiB")
	}
}

// startingStackSize returns the stack size that the runtime gives a
// goroutine that reuses a finished one's.
func startingStackSize() uint64 {
	s := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// useStack calls itself n times, each frame ~1 KiB.
//
//go:noinline
func useStack(n int) {
	var b [1 << 10]byte
	keep(b[:])
	if n > 0 {
		useStack(n - 1)
	}
}

// GoroutineID returns the calling goroutine's id as runtime.Stack prints
// it.
func GoroutineID() string {
	var buf [64]byte
	s := strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine ")
	id, _, _ := strings.Cut(s, " ")
	return id
}

// WaitParked waits until the goroutine id (see [GoroutineID]) is parked
// in state, as runtime.Stack names it ("IO wait", "chan receive"), with
// the function fn (its full name) among its frames. It waits as long as
// that takes: a goroutine that never gets there hangs the test until go
// test's timeout, which prints where it is.
func WaitParked(tb testing.TB, id, state, fn string) {
	tb.Helper()
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			if strings.HasPrefix(g, "goroutine "+id+" ["+state) && strings.Contains(g, "\n"+fn+"(") {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// GCCycles returns how many GC cycles have completed.
func GCCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// GCAlone runs a GC and reports whether it was the only one since cycles
// completed were n (see [GCCycles]): whether no other GC cycle ran, or
// was running, since then. [runtime.GC] finishes a cycle in progress and
// then runs a cycle of its own, so one that ran in the meantime, or still
// runs, counts too.
func GCAlone(n uint64) bool {
	runtime.GC()
	return GCCycles() == n+1
}
