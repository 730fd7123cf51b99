package header

import (
	"net/http"
	"testing"
)

// Get finds what http.Header.Get finds for a canonical key, whatever the
// case of the keys in the map: Get canonicalizes the key it looks up, not
// the keys in the map, so neither finds a key written in another case.
func TestGetIsHeaderGet(t *testing.T) {
	t.Parallel()
	keys := []string{"Content-Type", "Pubsub-Type", "X-Request-Id"}
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{name: "nil", header: nil},
		{name: "empty", header: http.Header{}},
		{name: "canonical", header: http.Header{"Content-Type": {"application/json"}, "Pubsub-Type": {"a.B"}, "X-Request-Id": {"abc"}}},
		{name: "several values", header: http.Header{"Content-Type": {"application/json", "application/proto"}}},
		{name: "no values", header: http.Header{"Content-Type": {}, "Pubsub-Type": nil}},
		{name: "lower case", header: http.Header{"content-type": {"application/json"}, "x-request-id": {"abc"}}},
		{name: "upper case", header: http.Header{"CONTENT-TYPE": {"application/json"}, "PUBSUB-TYPE": {"a.B"}}},
		{name: "both cases", header: http.Header{"content-type": {"application/json"}, "Content-Type": {"application/proto"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, key := range keys {
				if got, want := Get(tc.header, key), tc.header.Get(key); got != want {
					t.Errorf("Get(%v, %q) = %q, http.Header.Get = %q", tc.header, key, got, want)
				}
			}
		})
	}
}
