package kit

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/reflect/protoreflect"
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

// BenchmarkHoldQueryKeys measures holdQuery on a query of n distinct map
// entries (?metadata[k0]=v&metadata[k1]=v...), whose cost a parameter
// must not grow with n: compare ns/param across n.
func BenchmarkHoldQueryKeys(b *testing.B) {
	md := (&errdetails.ErrorInfo{}).ProtoReflect().Descriptor()
	m := routeMethods{queryNames: map[string]bool{}, inputs: []protoreflect.MessageDescriptor{md}}
	addQueryFields(m.queryNames, md)
	for _, n := range []int{1000, 16000} {
		var q strings.Builder
		for i := range n {
			fmt.Fprintf(&q, "&metadata[k%07d]=v", i)
		}
		query := q.String()[1:]
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				if _, held := m.holdQuery(query); len(held) != n {
					b.Fatalf("held %d parameters, want %d", len(held), n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/param")
		})
	}
}

// A firstMessageExtra merges its extra into the first envelope alone, and
// passes on what follows it, and a body too short for an envelope, as
// they came.
func TestFirstMessageExtra(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ body, want string }{
		"two messages":  {"\x00\x00\x00\x00\x02ab\x00\x00\x00\x00\x01c", "\x00\x00\x00\x00\x05ab+xy\x00\x00\x00\x00\x01c"},
		"empty message": {"\x00\x00\x00\x00\x00", "\x00\x00\x00\x00\x03+xy"},
		"short prefix":  {"\x00\x00", "\x00\x00"},
		"no body":       {"", ""},
	} {
		got, err := io.ReadAll(iotest.OneByteReader(&firstMessageExtra{ReadCloser: io.NopCloser(strings.NewReader(tc.body)), extra: []byte("+xy")}))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: read %q, %v; want %q", name, got, err, tc.want)
		}
	}
}

// A firstMessageExtra with rewrite replaces the first message with
// rewrite's result, in an envelope of its length, and passes on what
// follows as it came.
func TestFirstMessageRewrite(t *testing.T) {
	t.Parallel()
	rewrite := func(first []byte) ([]byte, error) { return append(bytes.ToUpper(first), '!'), nil }
	for name, tc := range map[string]struct{ body, want string }{
		"two messages":  {"\x00\x00\x00\x00\x02ab\x00\x00\x00\x00\x01c", "\x00\x00\x00\x00\x03AB!\x00\x00\x00\x00\x01c"},
		"empty message": {"\x00\x00\x00\x00\x00", "\x00\x00\x00\x00\x01!"},
		"short prefix":  {"\x00\x00", "\x00\x00"},
	} {
		got, err := io.ReadAll(iotest.OneByteReader(&firstMessageExtra{ReadCloser: io.NopCloser(strings.NewReader(tc.body)), rewrite: rewrite}))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: read %q, %v; want %q", name, got, err, tc.want)
		}
	}
	// A compressed first message, which vanguard does not send, fails:
	// neither extra nor a rewrite can go into gzip's bytes.
	for _, b := range []*firstMessageExtra{{rewrite: rewrite}, {extra: []byte{8, 1}}} {
		b.ReadCloser = io.NopCloser(strings.NewReader("\x01\x00\x00\x00\x02ab"))
		if got, err := io.ReadAll(b); connect.CodeOf(err) != connect.CodeInternal {
			t.Errorf("compressed first message (rewrite %t): read %q, %v; want an Internal error", b.rewrite != nil, got, err)
		}
	}
}

// BenchmarkHoldQueryUnknownKeys measures holdQuery on a query of 4 600
// names of no field with a [key] (?u0[k]=v&u1[k]=v..., 64 KiB), which
// vanguard ignores, among routed requests of one type and of 200: compare
// ns/param across them.
func BenchmarkHoldQueryUnknownKeys(b *testing.B) {
	md := (&errdetails.ErrorInfo{}).ProtoReflect().Descriptor()
	var q strings.Builder
	for i := range 4600 {
		fmt.Fprintf(&q, "&u%d[k]=v", i)
	}
	query := q.String()[1:]
	for _, inputs := range []int{1, 200} {
		m := routedAs(md, inputs)
		b.Run(strconv.Itoa(inputs), func(b *testing.B) {
			for b.Loop() {
				if _, held := m.holdQuery(query); held != nil {
					b.Fatalf("held %d parameters, want none", len(held))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*4600), "ns/param")
		})
	}
}

// BenchmarkHoldQueryValidWKT measures holdQuery on a query of one valid
// singular well-known type (?retry_delay=1.5s, a Duration), which no
// routed request needs kit for, among routed requests of one type and of
// 50 that have the field (50 Update methods' update_mask, say): compare
// ns/op and allocs/op across them.
func BenchmarkHoldQueryValidWKT(b *testing.B) {
	md := (&errdetails.RetryInfo{}).ProtoReflect().Descriptor()
	for _, inputs := range []int{1, 50} {
		m := routedAs(md, inputs)
		b.Run(strconv.Itoa(inputs), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, held := m.holdQuery("retry_delay=1.5s"); held != nil {
					b.Fatalf("held %d parameters, want none", len(held))
				}
			}
		})
	}
}

// routedAs returns the routeMethods of inputs routed requests, each md,
// as many routed request types to holdQuery.
func routedAs(md protoreflect.MessageDescriptor, inputs int) *routeMethods {
	m := &routeMethods{queryNames: map[string]bool{}}
	for range inputs {
		m.inputs = append(m.inputs, md)
	}
	addQueryFields(m.queryNames, md)
	return m
}
