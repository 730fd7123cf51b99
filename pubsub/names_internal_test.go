package pubsub

import (
	"mime"
	"net/textproto"
	"strings"
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

// FuzzPayloadContentType reads any Content-Type a producer may send: the
// answer is proto, JSON or neither; the forms matched without parsing read
// as they would parsed; and since media types, parameter names and the
// charset are case-insensitive, upper-casing the ASCII letters of one
// changes nothing.
func FuzzPayloadContentType(f *testing.F) {
	for _, seed := range []string{
		"", ContentTypeProto, ContentTypeJSON, "application/json; charset=utf-8", "Application/JSON; Charset=\"UTF-8\"",
		"application/protobuf", "application/x-protobuf+json", "application/proto; x=1", "application/json; charset=latin1",
		"application/json; charset=utf-8; charset=utf-8", "application/json;", "text/plain", "application/json; charset*=utf-8''x",
		"application/json; charset*0=utf; charset*1=-8", "application/json; CHARSET=utf-8 ; ", "application/proto\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		got := payloadContentType(ct)
		switch got {
		case "", ContentTypeProto, ContentTypeJSON:
		default:
			t.Fatalf("payloadContentType(%q) = %q", ct, got)
		}
		if upper := asciiUpper(ct); payloadContentType(upper) != got {
			t.Fatalf("payloadContentType(%q) = %q, but of %q %q", ct, got, upper, payloadContentType(upper))
		}
		if got != "" {
			if mediaType, _, err := mime.ParseMediaType(ct); err != nil || mediaType == "" {
				t.Fatalf("payloadContentType(%q) = %q, but it does not parse: %v", ct, got, err)
			}
		}
	})
}

func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// FuzzNames checks that a valid topic or subscription name is a NATS
// subject token sequence with no wildcard, no space and nothing a
// procedure splits on, so that "/topic/subscription" reads back as the two.
func FuzzNames(f *testing.F) {
	for _, seed := range []struct{ topic, sub string }{
		{"profiles.changed", "audit"}, {"", ""}, {"a..b", "a.b"}, {"a.*", "*"}, {"a.>", ">"}, {"_pubsub.x", "x y"},
		{"a/b", "a/b"}, {"ä", "ä"}, {".a", "-"}, {strings.Repeat("a", 201), strings.Repeat("a", 101)},
	} {
		f.Add(seed.topic, seed.sub)
	}
	f.Fuzz(func(t *testing.T, topic, sub string) {
		topicOK, subOK := ValidateTopic(topic) == nil, ValidateSubscription(sub) == nil
		if topicOK && (strings.ContainsAny(topic, "*> \t\r\n/") || strings.Contains(topic, "..") ||
			strings.HasPrefix(topic, ".") || strings.HasSuffix(topic, ".") || len(topic) > 200) {
			t.Fatalf("topic %q accepted", topic)
		}
		if subOK && (strings.ContainsAny(sub, "*> \t\r\n/.") || sub == "" || len(sub) > 100) {
			t.Fatalf("subscription %q accepted", sub)
		}
		if topicOK && subOK {
			service, method, ok := strings.Cut(strings.TrimPrefix(Procedure(topic, sub), "/"), "/")
			if !ok || service != topic || method != sub {
				t.Fatalf("Procedure(%q, %q) reads back as %q, %q", topic, sub, service, method)
			}
		}
	})
}
