package interceptors

import (
	"context"
	"sync/atomic"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	connectvalidate "connectrpc.com/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/emptypb"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/ruled"
)

// countingValidator counts the messages protovalidate's global validator
// is asked to check.
type countingValidator struct{ calls atomic.Int64 }

func (v *countingValidator) Validate(msg proto.Message, opts ...protovalidate.ValidationOption) error {
	v.calls.Add(1)
	return protovalidate.GlobalValidator.Validate(msg, opts...)
}

// ruledTestFile describes messages whose rules sit at different depths:
// Inner has a field rule; Plain, Node (recursive) and Holder (a map of
// Plain) have none; Outer, List and Map hold an Inner without rules of
// their own; Msg and Choice have a message and a oneof rule only.
func ruledTestFile(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	required := &descriptorpb.FieldOptions{}
	proto.SetExtension(required, validate.E_Field, validate.FieldRules_builder{Required: proto.Bool(true)}.Build())
	msgRule := &descriptorpb.MessageOptions{}
	proto.SetExtension(msgRule, validate.E_Message, validate.MessageRules_builder{CelExpression: []string{"true"}}.Build())
	oneofRule := &descriptorpb.OneofOptions{}
	proto.SetExtension(oneofRule, validate.E_Oneof, validate.OneofRules_builder{Required: proto.Bool(true)}.Build())

	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, typ *descriptorpb.FieldDescriptorProto_Type, label *descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(1), Type: typ, Label: label, JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(".ruledtest." + typeName)
		}
		return f
	}
	inner := field("s", str, opt, "")
	inner.Options = required
	choice := field("c", str, opt, "")
	choice.OneofIndex = proto.Int32(0)
	mapEntry := func(value string) *descriptorpb.DescriptorProto {
		key, val := field("key", str, opt, ""), field("value", msg, opt, value)
		val.Number = proto.Int32(2)
		return &descriptorpb.DescriptorProto{
			Name:    proto.String("EntriesEntry"),
			Field:   []*descriptorpb.FieldDescriptorProto{key, val},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
		}
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("ruledtest.proto"),
		Package: proto.String("ruledtest"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Inner"), Field: []*descriptorpb.FieldDescriptorProto{inner}},
			{Name: proto.String("Plain"), Field: []*descriptorpb.FieldDescriptorProto{field("s", str, opt, "")}},
			{Name: proto.String("Node"), Field: []*descriptorpb.FieldDescriptorProto{field("next", msg, opt, "Node")}},
			{Name: proto.String("Outer"), Field: []*descriptorpb.FieldDescriptorProto{field("inner", msg, opt, "Inner")}},
			{Name: proto.String("List"), Field: []*descriptorpb.FieldDescriptorProto{field("inners", msg, rep, "Inner")}},
			{
				Name:       proto.String("Map"),
				Field:      []*descriptorpb.FieldDescriptorProto{field("entries", msg, rep, "Map.EntriesEntry")},
				NestedType: []*descriptorpb.DescriptorProto{mapEntry("Inner")},
			},
			{
				Name:       proto.String("Holder"),
				Field:      []*descriptorpb.FieldDescriptorProto{field("entries", msg, rep, "Holder.EntriesEntry")},
				NestedType: []*descriptorpb.DescriptorProto{mapEntry("Plain")},
			},
			{Name: proto.String("Msg"), Field: []*descriptorpb.FieldDescriptorProto{field("s", str, opt, "")}, Options: msgRule},
			{
				Name:      proto.String("Choice"),
				Field:     []*descriptorpb.FieldDescriptorProto{choice},
				OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("kind"), Options: oneofRule}},
			},
		},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestValidationSkipsMessagesWithoutRules checks that Validation asks
// protovalidate about a message only when its type, or a type it holds,
// has rules: a service without rules never builds protovalidate's
// validator (BENCHMARKS.md section 12).
func TestValidationSkipsMessagesWithoutRules(t *testing.T) {
	t.Parallel()
	file := ruledTestFile(t)
	dynamic := func(name string) proto.Message {
		return dynamicpb.NewMessage(file.Messages().ByName(protoreflect.Name(name)))
	}
	cases := []struct {
		name  string
		msg   proto.Message
		ruled bool
	}{
		{name: "no fields", msg: &emptypb.Empty{}},
		{name: "no rules", msg: dynamic("Plain")},
		{name: "recursive without rules", msg: dynamic("Node")},
		{name: "map of a type without rules", msg: dynamic("Holder")},
		{name: "field rule", msg: &pingv1.PingRequest{Number: -1}, ruled: true},
		{name: "field rule of a dynamic type", msg: dynamic("Inner"), ruled: true},
		{name: "rule in a held message", msg: dynamic("Outer"), ruled: true},
		{name: "rule in a list's messages", msg: dynamic("List"), ruled: true},
		{name: "rule in a map's values", msg: dynamic("Map"), ruled: true},
		{name: "message rule", msg: dynamic("Msg"), ruled: true},
		{name: "oneof rule", msg: dynamic("Choice"), ruled: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var counter countingValidator
			call := newValidation(&counter).WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
				return connect.NewResponse(&emptypb.Empty{}), nil
			})
			for range 2 { // the second from the cache
				_, _ = call(t.Context(), requestOf(tc.msg))
			}
			want := int64(0)
			if tc.ruled {
				want = 2
			}
			if got := counter.calls.Load(); got != want {
				t.Errorf("protovalidate asked about %d messages, want %d", got, want)
			}
		})
	}
}

// requestOf wraps msg in a connect request.
func requestOf(msg proto.Message) connect.AnyRequest {
	switch m := msg.(type) {
	case *dynamicpb.Message:
		return connect.NewRequest(m)
	case *emptypb.Empty:
		return connect.NewRequest(m)
	case *pingv1.PingRequest:
		return connect.NewRequest(m)
	}
	panic("requestOf: no case for " + string(msg.ProtoReflect().Descriptor().FullName()))
}

// TestRuledValidatorRecentTypes checks that a procedure's validator, which
// remembers the last two types it met, judges each message by its own type
// when more types than that take turns: those with rules are asked about,
// those without are not.
func TestRuledValidatorRecentTypes(t *testing.T) {
	t.Parallel()
	file := ruledTestFile(t)
	dynamic := func(name string) proto.Message {
		return dynamicpb.NewMessage(file.Messages().ByName(protoreflect.Name(name)))
	}
	outer := dynamicpb.NewMessage(file.Messages().ByName("Outer"))
	outer.Set(outer.Descriptor().Fields().ByName("inner"), protoreflect.ValueOfMessage(dynamicpb.NewMessage(file.Messages().ByName("Inner"))))
	var counter countingValidator
	v := ruled.NewValidator(&counter, &ruled.Types{})
	turns := []struct {
		msg   proto.Message
		ruled bool
	}{
		{msg: dynamic("Plain")},
		{msg: dynamic("Inner"), ruled: true},
		{msg: dynamic("Plain")},
		{msg: dynamic("Holder")},
		{msg: outer, ruled: true},
		{msg: dynamic("Inner"), ruled: true},
		{msg: dynamic("Plain")},
		{msg: dynamic("Inner"), ruled: true},
	}
	for i, turn := range turns {
		before := counter.calls.Load()
		err := v.Validate(turn.msg)
		asked := counter.calls.Load() > before
		if asked != turn.ruled {
			t.Errorf("turn %d (%s): protovalidate asked %v, want %v", i, turn.msg.ProtoReflect().Descriptor().Name(), asked, turn.ruled)
		}
		if (err != nil) != turn.ruled { // each Inner is empty: s is required
			t.Errorf("turn %d (%s): %v", i, turn.msg.ProtoReflect().Descriptor().Name(), err)
		}
	}
}

// TestValidationResponsesOfAnotherType checks that a procedure whose
// requests hold no rules still validates its responses, which do, when
// validate.WithValidateResponses asks for it, call after call.
func TestValidationResponsesOfAnotherType(t *testing.T) {
	t.Parallel()
	file := ruledTestFile(t)
	inner := dynamicpb.NewMessage(file.Messages().ByName("Inner"))
	call := newValidation(protovalidate.GlobalValidator, connectvalidate.WithValidateResponses()).WrapUnary(
		func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
			return connect.NewResponse(inner), nil
		})
	for i := range 3 {
		_, err := call(t.Context(), requestOf(&emptypb.Empty{}))
		if code := connect.CodeOf(err); code != connect.CodeInternal {
			t.Errorf("call %d: %v, want internal for a response without its required field", i, err)
		}
	}
}

// replacesValidator tells the options that replace Validation's validator
// (so that protovalidate's global one need not be built) from those that
// do not, asking a validator given in them once.
func TestReplacesValidator(t *testing.T) {
	t.Parallel()
	var asked askCounter
	cases := []struct {
		name string
		opts []connectvalidate.Option
		want bool
	}{
		{name: "none", want: false},
		{name: "responses validated too", opts: []connectvalidate.Option{connectvalidate.WithValidateResponses()}, want: false},
		{name: "no error details", opts: []connectvalidate.Option{connectvalidate.WithoutErrorDetails()}, want: false},
		{name: "a validator of one's own", opts: []connectvalidate.Option{connectvalidate.WithValidator(&asked)}, want: true},
		{name: "then responses", opts: []connectvalidate.Option{connectvalidate.WithValidator(&asked), connectvalidate.WithValidateResponses()}, want: true},
	}
	for _, tc := range cases {
		if got := replacesValidator(tc.opts); got != tc.want {
			t.Errorf("%s: replacesValidator = %t, want %t", tc.name, got, tc.want)
		}
	}
	// Asked about the request, then about the response when responses are
	// validated too.
	if n := asked.n.Load(); n != 3 {
		t.Errorf("the validator of one's own was asked %d times, want 3", n)
	}
}

// askCounter is a validator that counts the messages it is asked about.
type askCounter struct{ n atomic.Int64 }

func (c *askCounter) Validate(proto.Message, ...protovalidate.ValidationOption) error {
	c.n.Add(1)
	return nil
}
