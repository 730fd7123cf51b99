package kit

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/typepb"
)

// bodyMaskPaths names a body's fields as grpc-gateway's
// FieldMaskFromRequestBody does: proto names (a JSON name resolved),
// nested messages' fields under their message, a list, a message set to
// {} or null, an Any as themselves, a Struct's by its JSON's keys, sorted;
// a name of no field is left out.
func TestBodyMaskPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		md         protoreflect.MessageDescriptor
		want       []string
	}{
		{name: "nested, JSON names, a list, an unknown field", md: (&descriptorpb.DescriptorProto{}).ProtoReflect().Descriptor(),
			body: `{"name":"x","options":{"deprecated":true,"features":{"fieldPresence":"EXPLICIT"}},"field":[{}],"bogus":{"a":1}}`,
			want: []string{"field", "name", "options.deprecated", "options.features.field_presence"}},
		{name: "a message {} or null", md: (&descriptorpb.DescriptorProto{}).ProtoReflect().Descriptor(),
			body: `{"options":{},"reservedRange":null}`, want: []string{"options", "reserved_range"}},
		{name: "a Struct", md: (&structpb.Value{}).ProtoReflect().Descriptor(),
			body: `{"structValue":{"a":{"b":1},"c":"d"}}`, want: []string{"struct_value.a.b", "struct_value.c"}},
		{name: "an Any", md: (&typepb.Option{}).ProtoReflect().Descriptor(),
			body: `{"name":"n","value":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"v"}}`, want: []string{"name", "value"}},
		{name: "empty", md: (&typepb.Option{}).ProtoReflect().Descriptor(), body: ``, want: nil},
		{name: "no object", md: (&typepb.Option{}).ProtoReflect().Descriptor(), body: `[1]`, want: nil},
	} {
		got, err := bodyMaskPaths(strings.NewReader(tc.body), tc.md)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: bodyMaskPaths(%s) = %q, %v; want %q", tc.name, tc.body, got, err, tc.want)
		}
	}
	if _, err := bodyMaskPaths(strings.NewReader(`{"name":`), (&typepb.Option{}).ProtoReflect().Descriptor()); err == nil {
		t.Error("bodyMaskPaths of malformed JSON: no error")
	}
}
