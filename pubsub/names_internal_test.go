package pubsub

import (
	"net/textproto"
	"testing"
)

// pubsub reads its header keys with header.Get, which finds what
// http.Header.Get finds only for a key in canonical form.
func TestHeaderKeysAreCanonical(t *testing.T) {
	t.Parallel()
	for _, key := range []string{HeaderContentType, HeaderMessageType, headerContentEncoding} {
		if c := textproto.CanonicalMIMEHeaderKey(key); c != key {
			t.Errorf("key %q is not canonical (%q): header.Get would miss what Get finds", key, c)
		}
	}
}
