package kit

import (
	"net/http"
	"unsafe"

	"github.com/connectkit/connectkit/internal/connctx"
)

// growStack gives the goroutine a 16 KiB stack at once, while its stack is
// still shallow.
//
// net/http serves every HTTP/2 request on a new goroutine, which starts
// with a small stack (2 KiB, or the runtime's running average), and every
// HTTP/1.x request on its connection's goroutine, whose stack GC shrinks
// while the connection waits (see [growConnStack]); the stack then grows by
// doubling as the call gets deep: connect decoding the message,
// the interceptor chain, slog formatting the log line. Each growth copies
// the whole stack and walks every frame on it, which on a gRPC call
// through kit's default chain cost about 15% of the server's CPU
// (BENCHMARKS.md). An 8 KiB frame cannot fit in a stack of 8 KiB or less,
// so it makes the runtime grow the stack once, straight to 16 KiB, with
// five frames to copy; 16 KiB is enough for the default chain and is the
// largest size the runtime serves from its per-P stack cache. The frame
// is reserved, never written (see bufUsed).
//
//go:noinline
func growStack() {
	if bufUsed {
		var buf [8 << 10]byte
		keep(buf[:])
	}
}

// bufUsed is always false. growStack tests it so that the compiler keeps
// buf in the frame (a branch that it cannot prove dead) but zeroes it only
// on that branch: zeroed on every HTTP/2 request, the frame cost ~1 000
// instructions and 128 cache lines written (BENCHMARKS.md 1.35).
var bufUsed bool

// keep stops the compiler from optimizing growStack's frame away.
//
//go:noinline
func keep([]byte) {}

// growConnStack grows the stack of the goroutine serving an HTTP/1.x
// connection's requests with [growStack], unless it is where mark says it
// was left after the last growth, and then updates mark; it reports whether
// it grew. So only the requests after a shrink pay for the growth.
//
// The runtime shrinks a goroutine's stack only while GC scans it, and only
// by copying it to a new, smaller one; a stack that grows is copied too.
// So a frame at the same depth of a stack that has not moved is at the same
// address: when [stackMark], called from the same place for each request
// of a connection, returns what it did after the last growth, the stack is
// still at least 16 KiB. A move that happened to land exactly there again
// would only cost one growth deep in the call, never a wrong answer. It is
// hand-written because the runtime offers nothing as cheap: reading
// runtime/metrics' GC cycle count takes a global lock (about 80 ns a read),
// and a GC epoch kept by a self-rearming finalizer needs a global that
// outlives every server, and would also grow stacks after the GCs that did
// not shrink them.
func growConnStack(mark *uintptr) bool {
	if stackMark() == *mark {
		return false
	}
	growStack()
	*mark = stackMark() // growStack moved the stack, or did nothing
	return true
}

// stackMark returns the address of a variable in its own frame: it
// changes when the calling goroutine's stack moves, and only then, as long
// as it is called from the same depth. The address is never turned back
// into a pointer.
//
//go:noinline
func stackMark() uintptr {
	var b byte
	return uintptr(unsafe.Pointer(&b))
}

// http1Conn returns the state of the HTTP/1.x connection r came over, which
// [interceptors.ConnContext] keeps, or nil for HTTP/2 or a connection
// without it.
func http1Conn(r *http.Request) *connctx.State {
	if r.ProtoMajor != 1 {
		return nil
	}
	return connctx.FromContext(r.Context())
}
