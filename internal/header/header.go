// Package header reads HTTP headers by keys already in canonical form.
package header

import "net/http"

// Get is h.Get(key) for a key in canonical form ("Content-Type"): the first
// value of h[key], or "". http.Header.Get canonicalizes the key it looks
// up on every call (textproto.CanonicalMIMEHeaderKey, ~400 instructions
// even for a canonical key), which the hot paths of kit, its interceptors
// and pubsub look up with constant keys on every call and message.
func Get(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
