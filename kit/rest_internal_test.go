package kit

import "testing"

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
