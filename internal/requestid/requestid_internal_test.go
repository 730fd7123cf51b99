package requestid

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// formatUUID, version 4, says what google/uuid's NewRandom and String say of the
// same 128 bits, for edge cases and many random ones.
func TestFormatUUIDv4(t *testing.T) {
	t.Parallel()
	reference := func(hi, lo uint64) string {
		var u [16]byte
		binary.BigEndian.PutUint64(u[:8], hi)
		binary.BigEndian.PutUint64(u[8:], lo)
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80 // variant 10
		return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	}
	inputs := [][2]uint64{{0, 0}, {^uint64(0), ^uint64(0)}, {0x0123456789abcdef, 0xfedcba9876543210}}
	for d := range uint64(16) { // every digit in every place
		inputs = append(inputs, [2]uint64{d * 0x1111111111111111, d * 0x1111111111111111})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		inputs = append(inputs, [2]uint64{r.Uint64(), r.Uint64()})
	}
	for _, in := range inputs {
		got, want := formatUUID(in[0], in[1], 4), reference(in[0], in[1])
		if got != want {
			t.Fatalf("formatUUID(%#x, %#x, 4) = %s; want %s", in[0], in[1], got, want)
		}
	}
	if got := formatUUID(0, 0, 4); got != "00000000-0000-4000-8000-000000000000" {
		t.Errorf("formatUUID(0, 0, 4) = %s; want version 4 and variant 10 set", got)
	}
	if got := formatUUID(^uint64(0), ^uint64(0), 4); got != "ffffffff-ffff-4fff-bfff-ffffffffffff" {
		t.Errorf("formatUUID(all ones, 4) = %s; want version 4 and variant 10 set", got)
	}
}

// FuzzServer checks that a call keeps its caller's id exactly when Valid
// accepts it, and that whatever it gets is an id Valid accepts: nothing
// that could split a header or a log line, or break out of a URL path.
func FuzzServer(f *testing.F) {
	for _, seed := range []string{
		"", "abc", "0af7651916cd43dd8448eb211c80319c", "a b", "a\r\nX-Evil: 1", "a\"b", "ä", "%2F", "a=b@c:d/e+f",
		string(make([]byte, maxLen)), "x" + string(make([]byte, maxLen)),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, incoming string) {
		id := Server(incoming)
		if (id == incoming) != Valid(incoming) {
			t.Fatalf("Server(%q) = %q, Valid = %v", incoming, id, Valid(incoming))
		}
		if !Valid(id) || len(id) > maxLen || strings.ContainsAny(id, " \t\r\n\"\\%?#&") || !utf8.ValidString(id) {
			t.Fatalf("Server(%q) = %q", incoming, id)
		}
	})
}

// ServerIn is Server, with a new id's bytes in the caller's buffer.
func TestServerIn(t *testing.T) {
	t.Parallel()
	var buf [Len]byte
	if id := ServerIn("abc", &buf); id != "abc" || buf != [Len]byte{} {
		t.Errorf("ServerIn(abc) = %q, wrote %q; want abc and nothing written", id, buf[:])
	}
	seen := map[string]bool{}
	for range 100 {
		var buf [Len]byte
		id := ServerIn("bad id", &buf)
		if !Valid(id) || len(id) != Len || id != string(buf[:]) || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("ServerIn(bad id) = %q, buffer %q; want a version 4 UUID in the buffer", id, buf[:])
		}
		if seen[id] {
			t.Fatalf("ServerIn made %q twice", id)
		}
		seen[id] = true
	}
}

// Of gives a key the same valid id every time, another key another id.
func TestOf(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("orders.", 30) + ":1:1765000000000000000"
	a, b := Of(long), Of(long+"x")
	if a != Of(long) || a == b || !Valid(a) || a[14] != '8' {
		t.Errorf("Of = %s, %s (again %s): want one valid version 8 id per key", a, b, Of(long))
	}
}
