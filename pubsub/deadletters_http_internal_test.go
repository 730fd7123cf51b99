package pubsub

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestHasUnknownFields checks that unknown fields are found at any depth:
// in a message, a message field, a list of messages and a map of messages.
func TestHasUnknownFields(t *testing.T) {
	t.Parallel()
	unknown := protowire.AppendString(protowire.AppendTag(nil, 999, protowire.BytesType), "newer")
	withUnknown := func(m proto.Message) proto.Message {
		m.ProtoReflect().SetUnknown(unknown)
		return m
	}
	tests := []struct {
		name string
		msg  proto.Message
		want bool
	}{
		{name: "none", msg: &descriptorpb.FileDescriptorProto{Name: proto.String("f"), MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("M")}}}},
		{name: "top", msg: withUnknown(&descriptorpb.FileDescriptorProto{Name: proto.String("f")}), want: true},
		{name: "message field", msg: &descriptorpb.FileDescriptorProto{Options: withUnknown(&descriptorpb.FileOptions{}).(*descriptorpb.FileOptions)}, want: true},
		{name: "list", msg: &descriptorpb.FileDescriptorProto{MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("A")}, withUnknown(&descriptorpb.DescriptorProto{Name: proto.String("B")}).(*descriptorpb.DescriptorProto),
		}}, want: true},
		{name: "map", msg: &structpb.Struct{Fields: map[string]*structpb.Value{
			"a": structpb.NewStringValue("a"), "b": withUnknown(structpb.NewStringValue("b")).(*structpb.Value),
		}}, want: true},
		{name: "map without", msg: &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("a")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := tc.msg.ProtoReflect()
			if got := hasUnknownFields(m); got != tc.want {
				t.Errorf("hasUnknownFields = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzDeadLetterJSON lists a dead letter whose payload, content type and
// message type a producer chose: the listing must encode (its payload is
// valid JSON, or left to payload_base64, which then holds it whole), and a
// payload shown as JSON with nothing missing must decode back to the same
// message when its type is known.
func FuzzDeadLetterJSON(f *testing.F) {
	value, _ := proto.Marshal(structpb.NewStringValue("hi"))
	nested, _ := proto.Marshal(&descriptorpb.FileDescriptorProto{MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("M")}}})
	unknown := protowire.AppendString(protowire.AppendTag(nil, 999, protowire.BytesType), "newer")
	for _, seed := range []struct {
		ct, typ string
		data    []byte
	}{
		{"", "google.protobuf.Value", value},
		{ContentTypeProto, "google.protobuf.FileDescriptorProto", nested},
		{ContentTypeProto, "google.protobuf.FileDescriptorProto", append(nested, unknown...)},
		{ContentTypeJSON, "", []byte(`{"a": 1}`)},
		{ContentTypeJSON, "", []byte("{\"a\": \"\xff\"}")},
		{ContentTypeJSON, "", []byte(`{"a": 1} x`)},
		{"text/plain", "", []byte("hi")},
		{"", "google.protobuf.Any", []byte("\x0a\x03a.b")},
		{"", "google.protobuf.Value", []byte("\x09\x00\x00\x00\x00\x00\x00\xf8\x7f")}, // NaN
		{"", "no.such.Type", value},
		{"", "", []byte{0xff}},
	} {
		f.Add(seed.ct, seed.typ, seed.data)
	}
	f.Fuzz(func(t *testing.T, ct, typ string, data []byte) {
		dl := &DeadLetter{Message: Message{Topic: "t", Header: http.Header{}, Data: data}, Subscription: "s"}
		if ct != "" {
			dl.Message.Header.Set(HeaderContentType, ct)
		}
		if typ != "" {
			dl.Message.Header.Set(HeaderMessageType, typ)
		}
		out := toJSON(dl)
		if _, err := json.Marshal(out); err != nil {
			t.Fatalf("listing does not encode: %v", err)
		}
		if out.Payload == nil || out.PayloadUnknownFields {
			if !bytes.Equal(out.PayloadBase64, data) {
				t.Fatalf("payload_base64 %q, want the payload %q", out.PayloadBase64, data)
			}
			return
		}
		if payloadContentType(ct) == ContentTypeJSON || ct != "" && payloadContentType(ct) != ContentTypeProto {
			return
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typ))
		if err != nil {
			t.Fatalf("payload of unknown type %q shown as %s", typ, out.Payload)
		}
		got, want := mt.New().Interface(), mt.New().Interface()
		if err := protojson.Unmarshal(out.Payload, got); err != nil {
			t.Fatalf("payload shown as %s, which does not read back: %v", out.Payload, err)
		}
		if err := proto.Unmarshal(data, want); err != nil || !proto.Equal(got, want) {
			t.Fatalf("payload shown as %s reads back as %v, not %v (%v)", out.Payload, got, want, err)
		}
	})
}
