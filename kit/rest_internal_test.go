package kit

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// dynamicUTF8Error reads protobuf-go's message with either space it
// writes after "proto:", and nothing else.
func TestDynamicUTF8Error(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ msg, field string }{
		{"proto: field a.B.name contains invalid UTF-8", "a.B.name"},
		{"proto:\u00a0field a.B.name contains invalid UTF-8", "a.B.name"},
		{"string field contains invalid UTF-8", ""},
		{"proto: field a.B.name is required", ""},
		{"proto: a.B.name contains invalid UTF-8", ""},
	} {
		if got := dynamicUTF8Error(tc.msg); got != tc.field {
			t.Errorf("dynamicUTF8Error(%q) = %q, want %q", tc.msg, got, tc.field)
		}
	}
}

// A vanguardBody reads its extra after the body vanguard gives, whether
// that body's last read returns its last bytes with io.EOF, as an
// io.Reader may, or apart.
func TestVanguardBodyExtra(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]io.Reader{
		"EOF with the data": iotest.DataErrReader(strings.NewReader("body")),
		"EOF apart":         strings.NewReader("body"),
		"one byte a read":   iotest.OneByteReader(strings.NewReader("body")),
	} {
		got, err := io.ReadAll(&vanguardBody{ReadCloser: io.NopCloser(body), extra: []byte("+extra")})
		if err != nil || string(got) != "body+extra" {
			t.Errorf("%s: read %q, %v; want %q", name, got, err, "body+extra")
		}
	}
}
