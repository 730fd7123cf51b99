package interceptors

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// payload is a message as a log attribute value: a nested JSON object for
// slog's JSON handler (json.Marshaler), a JSON string for text handlers
// (fmt.Stringer). Fields marked debug_redact in the proto are left out, at any
// depth, inside maps, lists and google.protobuf.Any. The work is done only if
// a handler formats the value.
type payload struct{ msg any }

// MarshalJSON implements json.Marshaler.
func (p payload) MarshalJSON() ([]byte, error) {
	m, ok := p.msg.(proto.Message)
	if !ok {
		return fmt.Appendf(nil, "%q", fmt.Sprintf("<%T>", p.msg)), nil
	}
	return protojson.Marshal(redacted(m))
}

// String implements fmt.Stringer.
func (p payload) String() string {
	b, err := p.MarshalJSON()
	if err != nil {
		return fmt.Sprintf("<unprintable %T: %v>", p.msg, err)
	}
	return string(b)
}

// redacted returns a copy of m without its debug_redact fields.
func redacted(m proto.Message) proto.Message {
	c := proto.Clone(m)
	redact(c.ProtoReflect())
	return c
}

func redact(m protoreflect.Message) {
	if m.Descriptor().FullName() == anyName {
		redactAny(m)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if isRedacted(fd) {
			m.Clear(fd) // clearing the current field is allowed while ranging
			return true
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					redact(mv.Message())
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				l := v.List()
				for i := range l.Len() {
					redact(l.Get(i).Message())
				}
			}
		case fd.Message() != nil:
			redact(v.Message())
		}
		return true
	})
	m.SetUnknown(nil) // unknown fields may be redacted ones of a newer schema
}

// anyName is google.protobuf.Any's name: an Any may be an *anypb.Any or,
// inside a dynamic message, a dynamic one.
const anyName protoreflect.FullName = "google.protobuf.Any"

// redactAny redacts the message packed in m, an Any. When the packed type is
// unknown here, its bytes cannot be inspected, so they are dropped.
func redactAny(m protoreflect.Message) {
	value := m.Descriptor().Fields().ByName("value")
	typeURL := m.Descriptor().Fields().ByName("type_url")
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(m.Get(typeURL).String())
	if err != nil {
		m.Clear(value)
		return
	}
	inner := mt.New()
	if err := proto.Unmarshal(m.Get(value).Bytes(), inner.Interface()); err != nil {
		m.Clear(value)
		return
	}
	redact(inner)
	b, err := proto.Marshal(inner.Interface())
	if err != nil {
		m.Clear(value)
		return
	}
	m.Set(value, protoreflect.ValueOfBytes(b))
}

func isRedacted(fd protoreflect.FieldDescriptor) bool {
	opts, ok := fd.Options().(*descriptorpb.FieldOptions)
	return ok && opts.GetDebugRedact()
}
