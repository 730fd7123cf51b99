package pubsub

import (
	"strings"
	"testing"

	"github.com/connectkit/connectkit/internal/requestid"
)

// TestMessageIDsAreLowerCase holds that the ids a publisher makes have no
// upper-case letter, so that no "N" in them stops nats-server's searches of
// a message's header block for its "Nats-…" headers (see idGenerator),
// and that they stay unique, 80 random bits long and valid request ids.
func TestMessageIDsAreLowerCase(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for range 200 {
		g := newIDGenerator()
		if len(g.prefix) != 16 { // 16 base32 characters: 80 bits
			t.Fatalf("prefix %q: %d characters, want 16", g.prefix, len(g.prefix))
		}
		for range 3 {
			id := g.next()
			if strings.ContainsFunc(id, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
				t.Fatalf("id %q has an upper-case letter", id)
			}
			if !requestid.Valid(id) {
				t.Fatalf("id %q is not a valid request id", id)
			}
			if seen[id] {
				t.Fatalf("id %q made twice", id)
			}
			seen[id] = true
		}
	}
}
