package interceptors

import (
	"strings"
	"testing"

	_ "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1" // PingRequest, packed in an Any below
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/anypb" // google/protobuf/any.proto
)

// redactFile has debug_redact fields at every depth: in a nested message, a
// list, a map value and, through PingRequest.secret, an Any.
const redactFile = `
name: "redact_test.proto" package: "test.redact" syntax: "proto3"
dependency: "google/protobuf/any.proto"
message_type {
  name: "Inner"
  field { name: "visible" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "visible" }
  field { name: "hidden" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "hidden" options { debug_redact: true } }
}
message_type {
  name: "Outer"
  field { name: "inner" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".test.redact.Inner" json_name: "inner" }
  field { name: "list" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".test.redact.Inner" json_name: "list" }
  field { name: "by_key" number: 3 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".test.redact.Outer.ByKeyEntry" json_name: "byKey" }
  field { name: "top_secret" number: 4 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "topSecret" options { debug_redact: true } }
  field { name: "any" number: 5 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Any" json_name: "any" }
  nested_type {
    name: "ByKeyEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "key" }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".test.redact.Inner" json_name: "value" }
    options { map_entry: true }
  }
}`

func TestPayloadRedaction(t *testing.T) {
	t.Parallel()
	fdp := &descriptorpb.FileDescriptorProto{}
	if err := prototext.Unmarshal([]byte(redactFile), fdp); err != nil {
		t.Fatal(err)
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	msg := dynamicpb.NewMessage(fd.Messages().ByName("Outer"))
	err = protojson.Unmarshal([]byte(`{
		"inner": {"visible": "v1", "hidden": "s1"},
		"list": [{"visible": "v2", "hidden": "s2"}],
		"byKey": {"k": {"visible": "v3", "hidden": "s3"}},
		"topSecret": "s4",
		"any": {"@type": "type.googleapis.com/connectkit.ping.v1.PingRequest", "text": "v5", "secret": "s5"}
	}`), msg)
	if err != nil {
		t.Fatal(err)
	}
	out := payload{msg: msg}.String()
	for _, want := range []string{"v1", "v2", "v3", "v5"} {
		if !strings.Contains(out, want) {
			t.Errorf("payload lacks %s: %s", want, out)
		}
	}
	for _, secret := range []string{"s1", "s2", "s3", "s4", "s5"} {
		if strings.Contains(out, `"`+secret+`"`) {
			t.Errorf("payload shows %s: %s", secret, out)
		}
	}
	if original, _ := protojson.Marshal(msg); !strings.Contains(string(original), `"s1"`) {
		t.Errorf("redaction changed the message itself: %s", original)
	}
}
