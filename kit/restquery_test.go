package kit_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// queryCase is a REST call of the Things service (see [thingsService]),
// whose echo answers the request message, and what it must get: the
// fields of the echo named in want, as JSON, or the status and, unless
// empty, the message of its google.rpc.Status.
type queryCase struct {
	name, method, target, body string
	header                     http.Header       // the request's, besides restCall's
	want                       map[string]string // field: its JSON in the echo
	status                     int
	message                    string
}

// checkQueryCases makes each call of cases over HTTP/1.1 and h2c, to a
// server of the Things service.
func checkQueryCases(t *testing.T, cases []queryCase) {
	t.Helper()
	checkServerQueryCases(t, newFuzzServer(t, kit.Config{}).Server, cases)
}

// checkServerQueryCases makes each call of cases over HTTP/1.1 and h2c to s.
func checkServerQueryCases(t *testing.T, s *kittest.Server, cases []queryCase) {
	t.Helper()
	for _, tc := range cases {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, tc.method, s.URL+tc.target, tc.body, tc.header)
			if tc.want == nil {
				var st struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if resp.StatusCode != tc.status || tc.message != "" && (json.Unmarshal([]byte(body), &st) != nil || st.Message != tc.message) {
					t.Errorf("%s: %s %s over %s = %d %s, want %d with message %q", tc.name, tc.method, tc.target, resp.Proto, resp.StatusCode, body, tc.status, tc.message)
				}
				continue
			}
			var got map[string]json.RawMessage
			if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
				t.Errorf("%s: %s %s over %s = %d %s, want 200", tc.name, tc.method, tc.target, resp.Proto, resp.StatusCode, body)
				continue
			}
			for field, want := range tc.want {
				var g, w any
				if json.Unmarshal(got[field], &g) != nil || json.Unmarshal([]byte(want), &w) != nil || !reflect.DeepEqual(g, w) {
					t.Errorf("%s: %s %s over %s: %s = %s, want %s", tc.name, tc.method, tc.target, resp.Proto, field, got[field], want)
				}
			}
		}
	}
}

// A query parameter of a repeated well-known type sets the field, one
// element a value, as grpc-gateway sets it, on a route vanguard calls its
// method with a Connect GET (Get, without side effects) or POST (Touch),
// after the body's: vanguard v0.4.0 panicked making a list where it
// unmarshals one message (a 500, and on POST routes the method ran with an
// empty request and answered 200). A value that does not parse is 400
// naming the parameter and its value.
func TestRESTQueryRepeatedWellKnownTypes(t *testing.T) {
	t.Parallel()
	const query = "?times=2020-01-01T00:00:00Z&times=%222021-01-01T00:00:00.5Z%22&waits=1.5s&scores=0.25&scores=NaN&name=n"
	want := map[string]string{
		"id":     `"7"`,
		"name":   `"n"`,
		"times":  `["2020-01-01T00:00:00Z","2021-01-01T00:00:00.500Z"]`,
		"waits":  `["1.500s"]`,
		"scores": `[0.25,"NaN"]`,
	}
	checkQueryCases(t, []queryCase{
		{name: "get", method: http.MethodGet, target: "/v1/things/7" + query, want: want},
		{name: "post", method: http.MethodPost, target: "/v1/things/7:touch" + query, want: want},
		{name: "nested path", method: http.MethodGet, target: "/v1/shelves/s/things/x" + query, want: map[string]string{"times": want["times"]}},
		{name: "after the body", method: http.MethodPost, target: "/v1/things?times=2021-01-01T00:00:00Z",
			body: `{"times":["2020-01-01T00:00:00Z"]}`, want: map[string]string{"times": `["2020-01-01T00:00:00Z","2021-01-01T00:00:00Z"]`}},
		{name: "bad timestamp", method: http.MethodGet, target: "/v1/things/7?times=2020-01-01T00:00:00Z&times=yesterday",
			status: http.StatusBadRequest, message: `invalid query parameter "times": "yesterday" is not a google.protobuf.Timestamp (RFC 3339, such as 2020-01-01T00:00:00Z)`},
		{name: "bad duration", method: http.MethodPost, target: "/v1/things/7:touch?waits=5",
			status: http.StatusBadRequest, message: `invalid query parameter "waits": "5" is not a google.protobuf.Duration (seconds with an s suffix, such as 1.5s)`},
		{name: "bad double", method: http.MethodGet, target: "/v1/things/7?scores=" + url.QueryEscape("1,2"),
			status: http.StatusBadRequest, message: `invalid query parameter "scores": "1,2" is not a google.protobuf.DoubleValue`},
		{name: "not UTF-8", method: http.MethodGet, target: "/v1/things/7?times=%FF",
			status: http.StatusBadRequest, message: `invalid query parameter "times": "\xff" is not UTF-8`},
	})
}

// A map entry is set as grpc-gateway sets it, ?labels[key]=value, its key
// and value parsed as their kinds, after the body's entries; vanguard
// v0.4.0 ignored such a parameter, as one that names no field. A map
// without [key], a key given twice, a key or value of another kind and
// [key] on a field that is no map are 400, naming the parameter.
func TestRESTQueryMapEntries(t *testing.T) {
	t.Parallel()
	want := map[string]string{"labels": `{"a":"1","b.c":"x y"}`, "sizes": `{"7":"-9"}`}
	const query = "?labels[a]=1&labels%5Bb.c%5D=x+y&sizes[7]=-9"
	checkQueryCases(t, []queryCase{
		{name: "get", method: http.MethodGet, target: "/v1/things/7" + query, want: want},
		{name: "post", method: http.MethodPost, target: "/v1/things/7:touch" + query, want: want},
		{name: "after the body", method: http.MethodPost, target: "/v1/things?labels[a]=query",
			body: `{"labels":{"a":"body","z":"z"}}`, want: map[string]string{"labels": `{"a":"query","z":"z"}`}},
		{name: "no key", method: http.MethodGet, target: "/v1/things/7?labels=x",
			status: http.StatusBadRequest, message: `invalid query parameter "labels": a map is set one entry at a time, as labels[key]=value`},
		{name: "key twice", method: http.MethodGet, target: "/v1/things/7?labels[a]=1&labels[a]=2",
			status: http.StatusBadRequest, message: `invalid query parameter "labels[a]": key "a" is given 2 times`},
		{name: "bad key", method: http.MethodPost, target: "/v1/things/7:touch?sizes[x]=1",
			status: http.StatusBadRequest, message: `invalid query parameter "sizes[x]": key "x" is not a int32`},
		{name: "bad value", method: http.MethodGet, target: "/v1/things/7?sizes[1]=y",
			status: http.StatusBadRequest, message: `invalid query parameter "sizes[1]": "y" is not a int64`},
		{name: "not a map", method: http.MethodGet, target: "/v1/things/7?name[k]=v",
			status: http.StatusBadRequest, message: `invalid query parameter "name[k]": field "name" is not a map`},
		{name: "no such field", method: http.MethodGet, target: "/v1/things/7?utm[k]=v&labels[a]=1",
			want: map[string]string{"labels": `{"a":"1"}`}},
	})
}

// A singular well-known type whose value does not parse is 400 naming the
// parameter, its value and the form it takes: vanguard v0.4.0's message
// quoted the value from a buffer it had overwritten ("value for type
// \"message\": \"" for ?time=x). A valid one is set as before.
func TestRESTQueryWellKnownTypeValue(t *testing.T) {
	t.Parallel()
	checkQueryCases(t, []queryCase{
		{name: "valid", method: http.MethodGet, target: "/v1/things/7?time=2020-01-01T00:00:00Z", want: map[string]string{"time": `"2020-01-01T00:00:00Z"`}},
		{name: "get", method: http.MethodGet, target: "/v1/things/7?time=x",
			status: http.StatusBadRequest, message: `invalid query parameter "time": "x" is not a google.protobuf.Timestamp (RFC 3339, such as 2020-01-01T00:00:00Z)`},
		{name: "empty", method: http.MethodGet, target: "/v1/things/7?time=",
			status: http.StatusBadRequest, message: `invalid query parameter "time": "" is not a google.protobuf.Timestamp (RFC 3339, such as 2020-01-01T00:00:00Z)`},
		{name: "empty mask", method: http.MethodGet, target: "/v1/things/7?mask=", want: map[string]string{"mask": `""`}},
		{name: "post", method: http.MethodPost, target: "/v1/things/7:touch?time=2020-13-01T00:00:00Z",
			status: http.StatusBadRequest, message: `invalid query parameter "time": "2020-13-01T00:00:00Z" is not a google.protobuf.Timestamp (RFC 3339, such as 2020-01-01T00:00:00Z)`},
	})
}

// A field of a Timestamp or Duration is set as grpc-gateway sets it
// (?time.seconds=1577836800), unless its value is out of the range that
// makes a valid one: 400, naming the parameter and the range, where
// vanguard v0.4.0 and grpc-gateway handed the method a Timestamp that is
// no time (?time.nanos=-5), which its response then failed to encode
// (500 Unknown).
func TestRESTQueryWellKnownTypeFieldRange(t *testing.T) {
	t.Parallel()
	checkQueryCases(t, []queryCase{
		{name: "in range", method: http.MethodGet, target: "/v1/things/7?time.seconds=1577836800&time.nanos=5", want: map[string]string{"time": `"2020-01-01T00:00:00.000000005Z"`}},
		{name: "nanos", method: http.MethodGet, target: "/v1/things/7?time.nanos=-5",
			status: http.StatusBadRequest, message: `invalid query parameter "time.nanos": -5 is out of range for the nanos of a google.protobuf.Timestamp (0 to 999999999)`},
		{name: "seconds", method: http.MethodPost, target: "/v1/things/7:touch?time.seconds=253402300800",
			status: http.StatusBadRequest, message: `invalid query parameter "time.seconds": 253402300800 is out of range for the seconds of a google.protobuf.Timestamp (-62135596800 to 253402300799)`},
	})
}

// A FieldMask's paths may be the fields' proto names
// (?mask=display_name,inner.text), as grpc-gateway users send an
// update_mask, or their lowerCamelCase JSON names, as protojson reads them:
// vanguard v0.4.0 refused proto names with an underscore, 400, its message
// garbled. Such a mask, or an empty one, replaces the body's, as one that
// vanguard sets does, where kit merged them (the paths of both; the body's
// kept).
func TestRESTQueryFieldMaskProtoNames(t *testing.T) {
	t.Parallel()
	checkQueryCases(t, []queryCase{
		{name: "proto names", method: http.MethodGet, target: "/v1/things/7?mask=display_name,inner.text", want: map[string]string{"mask": `"displayName,inner.text"`}},
		{name: "JSON names", method: http.MethodPost, target: "/v1/things/7:touch?mask=displayName,inner.text", want: map[string]string{"mask": `"displayName,inner.text"`}},
		{name: "after the body", method: http.MethodPost, target: "/v1/things?mask=display_name", body: `{"mask":"a","name":"n"}`,
			want: map[string]string{"mask": `"displayName"`, "name": `"n"`}},
		{name: "empty after the body", method: http.MethodPost, target: "/v1/things?mask=", body: `{"mask":"a","name":"n"}`,
			want: map[string]string{"mask": `""`, "name": `"n"`}},
		{name: "after a JSON one", method: http.MethodGet, target: "/v1/things/7?mask=aB&mask=c_d", want: map[string]string{"mask": `"cD"`, "id": `"7"`}},
		{name: "mixed", method: http.MethodGet, target: "/v1/things/7?mask=displayName,user_id",
			status: http.StatusBadRequest, message: `invalid query parameter "mask": "displayName,user_id" is not a google.protobuf.FieldMask (field paths separated by commas, of lowerCamelCase JSON names or proto names)`},
	})
}

// The query parameters kit takes from vanguard are the routes' alone: a
// path that no route has is not called, whatever its query.
func TestRESTQueryOfNoRoute(t *testing.T) {
	t.Parallel()
	checkQueryCases(t, []queryCase{
		{name: "unrouted", method: http.MethodGet, target: "/v1/nothing?time=x&times=y&labels[a]=b", status: http.StatusNotFound},
	})
}

// BenchmarkRESTQuery measures a REST call of the Things service over
// HTTP/1.1 (the client's and the server's work, in this process), by the
// kind of its query: "plain" names no field that is a map or well-known
// type, which kit only scans; "wkt" a valid Timestamp, which kit checks
// before vanguard sets it; "list" and "map" parameters kit sets itself.
// Compare allocs/op: see BENCHMARKS.md.
func BenchmarkRESTQuery(b *testing.B) {
	level := new(slog.LevelVar)
	s := kittest.NewServer(b, kit.Config{}, func(srv *kit.Server) { mountThings(b, srv) },
		kit.WithLogger(kit.NewLogger(dropWriter{}, "json", level)), kit.WithLogLevel(level))
	for _, bc := range []struct{ name, query string }{
		{"plain", "name=a&tags=1&tags=2&kind=KIND_BOOK&inner.text=t"},
		{"wkt", "name=a&time=2020-01-01T00:00:00Z"},
		{"list", "name=a&times=2020-01-01T00:00:00Z&times=2021-01-01T00:00:00Z"},
		{"map", "name=a&labels[k]=v&labels[l]=w"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			target := s.URL + "/v1/things/7?" + bc.query
			client := s.HTTP1Client()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(target)
				drainOK(b, resp, err, target)
			}
		})
	}
}

// drainOK reads the body of resp, the answer to a call of what, to its
// end and closes it, and fails b unless the call succeeded with 200.
func drainOK(b *testing.B, resp *http.Response, err error, what string) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: %d", what, resp.StatusCode)
	}
}
