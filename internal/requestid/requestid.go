// Package requestid checks and makes request ids: the X-Request-Id of a
// call, which package interceptors' RequestID gives every call and kit's
// server may echo before the call's handler runs (see [connctx.State]).
package requestid

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"unsafe"
)

// Header is the header that carries a request id: "X-Request-Id".
const Header = "X-Request-Id"

// maxLen bounds the length of an accepted incoming request id.
const maxLen = 128

// Server keeps the caller's id when it is valid.
func Server(incoming string) string {
	if Valid(incoming) {
		return incoming
	}
	return New()
}

// Len is the length of the ids that [New] and [Of] make.
const Len = 36

// ServerIn is [Server], with a new id's bytes written into buf, which the
// returned string then holds: for a caller that allocates buf with
// something else it needs anyway, one allocation fewer (kit's record of
// the id it echoes, connctx.State.EchoRequestID). The caller must not
// write buf again while the id is in use.
func ServerIn(incoming string, buf *[Len]byte) string {
	if Valid(incoming) {
		return incoming
	}
	putUUID(buf, rand.Uint64(), rand.Uint64(), 4)
	// The bytes are never written again (see above): a string over them
	// is what string(buf[:]) would copy them into.
	return unsafe.String(&buf[0], Len)
}

// Valid accepts 1 to 128 bytes of a charset that is safe in headers,
// log lines and URLs.
func Valid(id string) bool {
	if id == "" || len(id) > maxLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '/', c == '+', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}

// New returns a random (version 4) UUID. Its 122 random bits come
// from math/rand/v2's global generator, which is the runtime's per-thread
// ChaCha8 stream seeded from the OS: unpredictable enough for an id (it is
// not a secret), unique with overwhelming probability, and free of the
// system call and locking that crypto/rand may cost on every call.
func New() string {
	return formatUUID(rand.Uint64(), rand.Uint64(), 4)
}

// Of returns an id made from key, the same for the same key: a version 8
// UUID of key's SHA-256, for what has a stable identity that is not a
// valid id itself (a message id longer than 128 bytes).
func Of(key string) string {
	sum := sha256.Sum256([]byte(key))
	return formatUUID(binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:16]), 8)
}

// formatUUID returns the UUID of the 128 bits hi and lo, with its version
// set to version and its variant to RFC 9562's, in the canonical form
// xxxxxxxx-xxxx-Vxxx-[89ab]xxx-xxxxxxxxxxxx. It is straight-line code: a
// loop over the 16 bytes with a branch per dash cost about 700
// instructions a call, this about a tenth of that.
func formatUUID(hi, lo uint64, version uint64) string {
	var b [Len]byte
	putUUID(&b, hi, lo, version)
	return string(b[:])
}

// putUUID writes into b what formatUUID returns.
func putUUID(b *[Len]byte, hi, lo uint64, version uint64) {
	hi = hi&^(0xf<<12) | version<<12
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 9562 variant
	var h [32]byte
	binary.BigEndian.PutUint64(h[0:], hex8(uint32(hi>>32)))
	binary.BigEndian.PutUint64(h[8:], hex8(uint32(hi)))
	binary.BigEndian.PutUint64(h[16:], hex8(uint32(lo>>32)))
	binary.BigEndian.PutUint64(h[24:], hex8(uint32(lo)))
	copy(b[0:8], h[0:8])
	copy(b[9:13], h[8:12])
	copy(b[14:18], h[12:16])
	copy(b[19:23], h[16:20])
	copy(b[24:36], h[20:32])
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
}

// hex8 returns the 8 lowercase hex digits of x, one per byte, the most
// significant digit in the most significant byte. It spreads x's nibbles
// one per byte, then adds '0' to each, and 'a'-'0'-10 more to those of 10
// or more (the bytes that adding 6 carries into their bit 4).
func hex8(x uint32) uint64 {
	const ones = 0x0101010101010101
	v := uint64(x)
	v = (v | v<<16) & 0x0000ffff0000ffff
	v = (v | v<<8) & 0x00ff00ff00ff00ff
	v = (v | v<<4) & 0x0f0f0f0f0f0f0f0f
	letters := (v + 6*ones) >> 4 & ones
	return v + '0'*ones + letters*('a'-'0'-10)
}
