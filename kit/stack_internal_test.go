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
