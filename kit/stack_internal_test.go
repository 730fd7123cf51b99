package kit

import (
	"runtime"
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
// branch that never runs, see bufUsed).
func TestGrowStackReservesItsFrame(t *testing.T) {
	t.Parallel()
	moved := make(chan bool, 1)
	go func() { // starts with the runtime's smallest stack, 2 KiB
		growStack()
		before := stackMark()
		useStack(10) // ~10 KiB of frames
		moved <- stackMark() != before
	}()
	if <-moved {
		t.Error("the stack moved after growStack: it did not grow to 16 KiB")
	}
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
