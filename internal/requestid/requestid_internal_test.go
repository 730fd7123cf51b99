package requestid

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// formatUUIDv4 says what google/uuid's NewRandom and String say of the
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
		got, want := formatUUIDv4(in[0], in[1]), reference(in[0], in[1])
		if got != want {
			t.Fatalf("formatUUIDv4(%#x, %#x) = %s; want %s", in[0], in[1], got, want)
		}
	}
	if got := formatUUIDv4(0, 0); got != "00000000-0000-4000-8000-000000000000" {
		t.Errorf("formatUUIDv4(0, 0) = %s; want version 4 and variant 10 set", got)
	}
	if got := formatUUIDv4(^uint64(0), ^uint64(0)); got != "ffffffff-ffff-4fff-bfff-ffffffffffff" {
		t.Errorf("formatUUIDv4(all ones) = %s; want version 4 and variant 10 set", got)
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
