package kit

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

// An HTTP/1.x connection's goroutine grows its stack for its first request
// and after GC shrank it, not for the requests in between.
func TestConnStackGrowsOnlyAfterAShrink(t *testing.T) {
	t.Parallel()
	parked, resume := make(chan struct{}), make(chan struct{})
	got := make(chan [4]bool, 1)
	go func() { // a connection's goroutine, waiting for its next request in between
		var mark uintptr
		var grew [4]bool
		grew[0], grew[1] = growConnStack(&mark), growConnStack(&mark)
		parked <- struct{}{}
		<-resume
		grew[2], grew[3] = growConnStack(&mark), growConnStack(&mark)
		got <- grew
	}()
	<-parked
	runtime.GC() // shrinks the parked goroutine's stack, of which it uses little
	close(resume)
	if grew, want := <-got, [4]bool{true, false, true, false}; grew != want {
		t.Errorf("grew = %v; want %v (first call, again, after a GC, again)", grew, want)
	}
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
