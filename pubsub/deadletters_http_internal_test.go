package pubsub

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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
			var m protoreflect.Message = tc.msg.ProtoReflect()
			if got := hasUnknownFields(m); got != tc.want {
				t.Errorf("hasUnknownFields = %v, want %v", got, tc.want)
			}
		})
	}
}
