package kit_test

import (
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/structpb" // registers google/protobuf/struct.proto

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// clashesService is connectkit.clash.v1.Clashes, whose routes' request,
// Clash, gives names of [thingsService]'s Thing fields of other kinds: a
// repeated Timestamp "time" (Thing's is singular), a repeated string
// "times" (Thing's are Timestamps), a repeated DoubleValue "name" (Thing's
// is a string), an "inner" whose "text" is a repeated Duration (Thing's
// Inner's is a string) and a string "labels" (Thing's is a map); and a
// google.protobuf.Struct "meta", Value "value", ListValue "list" and
// repeated Value "values". Get is
// GET /v1/clashes/{id}, without side effects (vanguard calls it as a
// Connect GET), Create POST /v1/clashes with body "*". Registered once.
var clashesService = sync.OnceValues(func() (protoreflect.ServiceDescriptor, error) {
	field := fieldProto
	const (
		opt = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		rep = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		msg = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	method := func(name string, r *annotations.HttpRule, idempotency descriptorpb.MethodOptions_IdempotencyLevel) *descriptorpb.MethodDescriptorProto {
		o := &descriptorpb.MethodOptions{IdempotencyLevel: idempotency.Enum()}
		proto.SetExtension(o, annotations.E_Http, r)
		return &descriptorpb.MethodDescriptorProto{
			Name: proto.String(name), InputType: proto.String(".connectkit.clash.v1.Clash"),
			OutputType: proto.String(".connectkit.clash.v1.Clash"), Options: o,
		}
	}
	return registerService(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("connectkit/clash/v1/clashes.proto"),
		Package:    proto.String("connectkit.clash.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/api/annotations.proto", "google/protobuf/timestamp.proto", "google/protobuf/duration.proto", "google/protobuf/wrappers.proto", "google/protobuf/struct.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name:  proto.String("ClashInner"),
			Field: []*descriptorpb.FieldDescriptorProto{field("text", 1, msg, rep, ".google.protobuf.Duration")},
		}, {
			Name: proto.String("Clash"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("id", 1, descriptorpb.FieldDescriptorProto_TYPE_INT64, opt, ""),
				field("time", 2, msg, rep, ".google.protobuf.Timestamp"),
				field("times", 3, descriptorpb.FieldDescriptorProto_TYPE_STRING, rep, ""),
				field("name", 4, msg, rep, ".google.protobuf.DoubleValue"),
				field("inner", 5, msg, opt, ".connectkit.clash.v1.ClashInner"),
				field("labels", 6, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, ""),
				field("meta", 7, msg, opt, ".google.protobuf.Struct"),
				field("value", 8, msg, opt, ".google.protobuf.Value"),
				field("list", 9, msg, opt, ".google.protobuf.ListValue"),
				field("values", 10, msg, rep, ".google.protobuf.Value"),
			},
		}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Clashes"),
			Method: []*descriptorpb.MethodDescriptorProto{
				method("Get", &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/clashes/{id}"}}, descriptorpb.MethodOptions_NO_SIDE_EFFECTS),
				method("Create", &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/clashes"}, Body: "*"}, descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN),
			},
		}},
	})
})

// newClashServer serves [thingsService] and [clashesService], each an
// echo, on one server.
func newClashServer(t *testing.T) *fuzzServer {
	t.Helper()
	clashes, err := clashesService()
	if err != nil {
		t.Fatal(err)
	}
	s := &fuzzServer{log: &fuzzLog{}, reg: prometheus.NewRegistry()}
	s.Server = kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		mountThings(t, srv)
		mountEcho(srv, clashes)
	}, kit.WithLogger(slog.New(s.log)), kit.WithRegistry(s.reg))
	return s
}

// A query parameter whose name two routed requests give different kinds
// (a repeated well-known type in one, a singular one, a string or a
// string list in another) is set as each route's request has it, or
// refused 400 naming it: vanguard v0.4.0 panicked on the repeated
// well-known type (500 Internal, logged) where kit left the name to
// vanguard because another request's field of that name was one vanguard
// sets right. Things' routes and Clashes' are served by one server.
func TestRESTQueryNameOfTwoKinds(t *testing.T) {
	t.Parallel()
	s := newClashServer(t)
	const ts = "2020-01-01T00:00:00Z"
	cases := []queryCase{
		{name: "repeated timestamp", method: http.MethodGet, target: "/v1/clashes/1?time=" + ts + "&time=2021-01-01T00:00:00Z",
			want: map[string]string{"time": `["` + ts + `","2021-01-01T00:00:00Z"]`, "id": `"1"`}},
		{name: "singular timestamp", method: http.MethodGet, target: "/v1/things/7?time=" + ts, want: map[string]string{"time": `"` + ts + `"`}},
		{name: "singular timestamp after the body", method: http.MethodPost, target: "/v1/things?time=" + ts,
			body: `{"time":"2019-01-01T00:00:00Z","name":"n"}`, want: map[string]string{"time": `"` + ts + `"`, "name": `"n"`}},
		{name: "repeated timestamp after the body", method: http.MethodPost, target: "/v1/clashes?time=" + ts,
			body: `{"time":["2019-01-01T00:00:00Z"]}`, want: map[string]string{"time": `["2019-01-01T00:00:00Z","` + ts + `"]`}},
		{name: "strings", method: http.MethodGet, target: "/v1/clashes/1?times=" + ts + "&times=x", want: map[string]string{"times": `["` + ts + `","x"]`}},
		{name: "timestamps", method: http.MethodGet, target: "/v1/things/7?times=" + ts, want: map[string]string{"times": `["` + ts + `"]`}},
		{name: "doubles", method: http.MethodGet, target: "/v1/clashes/1?name=0.5&name=NaN", want: map[string]string{"name": `[0.5,"NaN"]`}},
		{name: "string", method: http.MethodGet, target: "/v1/things/7?name=0.5", want: map[string]string{"name": `"0.5"`}},
		{name: "empty string after the body", method: http.MethodPost, target: "/v1/things?name=", body: `{"name":"n","id":"3"}`,
			want: map[string]string{"name": `""`, "id": `"3"`}},
		{name: "durations", method: http.MethodGet, target: "/v1/clashes/1?inner.text=1.5s", want: map[string]string{"inner": `{"text":["1.500s"]}`}},
		{name: "inner string", method: http.MethodGet, target: "/v1/things/7?inner.text=1.5s", want: map[string]string{"inner": `{"text":"1.5s","words":[],"count":"0"}`}},
		{name: "string labels", method: http.MethodGet, target: "/v1/clashes/1?labels=x", want: map[string]string{"labels": `"x"`}},
		{name: "map without key", method: http.MethodGet, target: "/v1/things/7?labels=x",
			status: http.StatusBadRequest, message: `invalid query parameter "labels": a map is set one entry at a time, as labels[key]=value`},
		{name: "bad double", method: http.MethodGet, target: "/v1/clashes/1?name=x",
			status: http.StatusBadRequest, message: `invalid query parameter "name": "x" is not a google.protobuf.DoubleValue`},
		{name: "bad duration", method: http.MethodPost, target: "/v1/clashes?inner.text=5", body: `{}`,
			status: http.StatusBadRequest, message: `invalid query parameter "inner.text": "5" is not a google.protobuf.Duration (seconds with an s suffix, such as 1.5s)`},
		{name: "field of a list", method: http.MethodGet, target: "/v1/clashes/1?time.nanos=-5",
			status: http.StatusBadRequest, message: `invalid query parameter "time.nanos": field "time" of type connectkit.clash.v1.Clash should not be a list or map`},
		{name: "field of a string", method: http.MethodGet, target: "/v1/clashes/1?labels.x=1&labels[k]=v",
			status: http.StatusBadRequest},
	}
	checkServerQueryCases(t, s.Server, cases)
	if lines := s.log.panicsSince(0); len(lines) != 0 {
		t.Errorf("logged %d panics, want none: %q", len(lines), lines)
	}
}

// A google.protobuf.Struct, Value or ListValue query parameter is its JSON
// (?meta={"kind":"book"}), as grpc-gateway reads a Struct's and a Value's
// (it refuses a ListValue's; kit reads its JSON array too); a repeated
// one's values are elements; a singular one replaces the body's. Vanguard
// v0.4.0 refused them, 400 "unsupported message type". JSON that does not
// parse, or of another shape, is 400 naming the parameter.
func TestRESTQueryJSONWellKnownTypes(t *testing.T) {
	t.Parallel()
	s := newClashServer(t)
	q := url.QueryEscape
	checkServerQueryCases(t, s.Server, []queryCase{
		{name: "struct", method: http.MethodGet, target: "/v1/clashes/1?meta=" + q(`{"kind":"book","n":[1,null]}`),
			want: map[string]string{"meta": `{"kind":"book","n":[1,null]}`}},
		{name: "values", method: http.MethodGet, target: "/v1/clashes/1?value=" + q(`"text"`) + "&values=1&values=true&values=null&values=" + q(`{"a":"b"}`),
			want: map[string]string{"value": `"text"`, "values": `[1,true,null,{"a":"b"}]`}},
		{name: "list", method: http.MethodPost, target: "/v1/clashes?list=" + q(`[1,"a"]`), body: `{}`,
			want: map[string]string{"list": `[1,"a"]`}},
		{name: "after the body", method: http.MethodPost, target: "/v1/clashes?meta=" + q(`{"a":1}`), body: `{"meta":{"b":2},"labels":"x"}`,
			want: map[string]string{"meta": `{"a":1}`, "labels": `"x"`}},
		{name: "bare word", method: http.MethodGet, target: "/v1/clashes/1?value=text",
			status: http.StatusBadRequest, message: `invalid query parameter "value": "text" is not a google.protobuf.Value (JSON, such as "text", 1, true, null, [1] or {"k":1})`},
		{name: "not an object", method: http.MethodGet, target: "/v1/clashes/1?meta=" + q(`[1]`),
			status: http.StatusBadRequest, message: `invalid query parameter "meta": "[1]" is not a google.protobuf.Struct (a JSON object, such as {"kind":"book"})`},
		{name: "not an array", method: http.MethodGet, target: "/v1/clashes/1?list=1",
			status: http.StatusBadRequest, message: `invalid query parameter "list": "1" is not a google.protobuf.ListValue (a JSON array, such as [1,"a"])`},
		{name: "bad element", method: http.MethodGet, target: "/v1/clashes/1?values=1&values=" + q(`{"a"`),
			status: http.StatusBadRequest, message: `invalid query parameter "values": "{\"a\"" is not a google.protobuf.Value (JSON, such as "text", 1, true, null, [1] or {"k":1})`},
	})
}
