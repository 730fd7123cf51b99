package kit_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"

	"github.com/connectkit/connectkit/kit"
)

// A PATCH whose route's body is a field of the request (Update: `patch:
// "/v1/things/{id}" body: "inner"`), whose request has one FieldMask
// (mask), gets that mask filled from the body's fields when the client
// sent none, as grpc-gateway's patch feature fills it: the handler saw an
// empty mask and replaced every field. A mask in the query, even empty,
// is the client's; a body "*" (Create, a POST) or no body fills none; a
// field the message does not have is left out, as vanguard's decoding
// ignores it.
func TestRESTPatchFillsFieldMask(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"count":"3","words":["a"]}`))
	_ = zw.Close()
	checkQueryCases(t, []queryCase{
		{name: "one field", method: http.MethodPatch, target: "/v1/things/7", body: `{"text":"x"}`,
			want: map[string]string{"mask": `"text"`, "inner": `{"text":"x","words":[],"count":"0"}`}},
		{name: "an empty value is a field too", method: http.MethodPatch, target: "/v1/things/7", body: `{"text":"","words":[],"count":"3"}`,
			want: map[string]string{"mask": `"count,text,words"`}},
		{name: "JSON names and an unknown field", method: http.MethodPatch, target: "/v1/things/7", body: `{"count":3,"bogus":{"a":1}}`,
			want: map[string]string{"mask": `"count"`}},
		{name: "no fields", method: http.MethodPatch, target: "/v1/things/7", body: `{}`, want: map[string]string{"mask": `null`}},
		{name: "no body", method: http.MethodPatch, target: "/v1/things/7", want: map[string]string{"mask": `null`}},
		{name: "the client's mask", method: http.MethodPatch, target: "/v1/things/7?mask=count", body: `{"text":"x","count":"3"}`,
			want: map[string]string{"mask": `"count"`}},
		{name: "the client's mask, proto names", method: http.MethodPatch, target: "/v1/things/7?mask=count,text", body: `{"text":"x"}`,
			want: map[string]string{"mask": `"count,text"`}},
		{name: "the client's empty mask", method: http.MethodPatch, target: "/v1/things/7?mask=", body: `{"text":"x"}`,
			want: map[string]string{"mask": `""`}},
		{name: "body *, a POST", method: http.MethodPost, target: "/v1/things", body: `{"inner":{"text":"x"}}`,
			want: map[string]string{"mask": `null`}},
		{name: "other query parameters", method: http.MethodPatch, target: "/v1/things/7?name=n&tags=1", body: `{"text":"x"}`,
			want: map[string]string{"mask": `"text"`, "name": `"n"`, "tags": `[1]`}},
		{name: "gzip", method: http.MethodPatch, target: "/v1/things/7", body: gz.String(), header: http.Header{"Content-Encoding": {"gzip"}},
			want: map[string]string{"mask": `"count,words"`}},
	})
}

// A gzipped PATCH body whose JSON inflates past MaxRequestBytes, within
// the limit vanguard decodes under (the larger of MaxRequestBytes and
// MaxResponseBytes), gets its mask as a POST of it gets its call: the
// mask's reading was bounded at MaxRequestBytes and answered 400 "the
// body's fields, for the update mask: unexpected EOF".
func TestRESTPatchMaskOfALargeGzippedBody(t *testing.T) {
	t.Parallel()
	gz := func(s string) string {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write([]byte(s))
		_ = zw.Close()
		return b.String()
	}
	pad := strings.Repeat(" ", 16<<10) // inflates past 4 KiB; compresses to a few bytes
	header := http.Header{"Content-Encoding": {"gzip"}}
	s := newFuzzServer(t, kit.Config{MaxRequestBytes: 4 << 10, MaxResponseBytes: 1 << 20}).Server
	checkServerQueryCases(t, s, []queryCase{
		{name: "POST", method: http.MethodPost, target: "/v1/things", body: gz(`{"inner":{"text":"x",` + pad + `"count":"3"}}`), header: header,
			want: map[string]string{"inner": `{"text":"x","words":[],"count":"3"}`}},
		{name: "PATCH", method: http.MethodPatch, target: "/v1/things/7", body: gz(`{"text":"x",` + pad + `"count":"3"}`), header: header,
			want: map[string]string{"mask": `"count,text"`, "inner": `{"text":"x","words":[],"count":"3"}`}},
	})
}
