package interceptors

import (
	"net/textproto"
	"testing"
)

// RequestIDHeader is read with header.Get, which finds what http.Header.Get
// finds only for a key in canonical form.
func TestRequestIDHeaderIsCanonical(t *testing.T) {
	if c := textproto.CanonicalMIMEHeaderKey(RequestIDHeader); c != RequestIDHeader {
		t.Errorf("RequestIDHeader %q is not canonical (%q)", RequestIDHeader, c)
	}
}
