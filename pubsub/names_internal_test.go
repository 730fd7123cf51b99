package pubsub

import (
	"net/http"
	"net/textproto"
	"testing"
)

// headerValue finds what http.Header.Get finds for pubsub's header keys,
// whatever the case of the keys a producer wrote: Get canonicalizes the key
// it looks up, not the keys in the map, so neither finds a key in another
// case (brokers canonicalize the keys of messages they receive).
func TestHeaderValueIsGet(t *testing.T) {
	t.Parallel()
	keys := []string{HeaderContentType, HeaderMessageType, headerContentEncoding}
	for _, key := range keys {
		if c := textproto.CanonicalMIMEHeaderKey(key); c != key {
			t.Fatalf("key %q is not canonical (%q): headerValue would miss what Get finds", key, c)
		}
	}
	tests := []struct {
		name   string
		header http.Header
	}{
		{name: "nil", header: nil},
		{name: "empty", header: http.Header{}},
		{name: "canonical", header: http.Header{"Content-Type": {"application/json"}, "Pubsub-Type": {"a.B"}, "Content-Encoding": {"gzip"}}},
		{name: "several values", header: http.Header{"Content-Type": {"application/json", "application/proto"}}},
		{name: "no values", header: http.Header{"Content-Type": {}, "Pubsub-Type": nil}},
		{name: "lower case", header: http.Header{"content-type": {"application/json"}, "pubsub-type": {"a.B"}, "content-encoding": {"gzip"}}},
		{name: "upper case", header: http.Header{"CONTENT-TYPE": {"application/json"}, "PUBSUB-TYPE": {"a.B"}}},
		{name: "both cases", header: http.Header{"content-type": {"application/json"}, "Content-Type": {"application/proto"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, key := range keys {
				if got, want := headerValue(tc.header, key), tc.header.Get(key); got != want {
					t.Errorf("headerValue(%v, %q) = %q, Get = %q", tc.header, key, got, want)
				}
			}
		})
	}
}
