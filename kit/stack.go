package kit

// growStack gives the goroutine a 16 KiB stack at once, while its stack is
// still shallow.
//
// net/http serves every HTTP/2 request on a new goroutine, which starts
// with a small stack (2 KiB, or the runtime's running average), and every
// HTTP/1.x request on a goroutine whose stack GC shrinks between requests;
// the stack then grows by doubling as the call gets deep: connect decoding the message,
// the interceptor chain, slog formatting the log line. Each growth copies
// the whole stack and walks every frame on it, which on a gRPC call
// through kit's default chain cost about 15% of the server's CPU
// (BENCHMARKS.md). An 8 KiB frame cannot fit in a stack of 8 KiB or less,
// so it makes the runtime grow the stack once, straight to 16 KiB, with
// five frames to copy; 16 KiB is enough for the default chain and is the
// largest size the runtime serves from its per-P stack cache. Zeroing the
// frame costs far less than the copies.
//
//go:noinline
func growStack() {
	var buf [8 << 10]byte
	keep(buf[:])
}

// keep stops the compiler from optimizing growStack's frame away.
//
//go:noinline
func keep([]byte) {}
