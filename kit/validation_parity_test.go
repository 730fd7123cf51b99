package kit_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// parityFile describes, in proto2, one message per place a buf.validate
// rule can sit (or seem to), and a service Parity with a method of the same
// name taking each. Leaf's field s needs two characters; Plain has no rule.
func parityFile(tb testing.TB) protoreflect.FileDescriptor {
	tb.Helper()
	type (
		fdp = descriptorpb.FieldDescriptorProto
		dp  = descriptorpb.DescriptorProto
	)
	minLen2 := func() *validate.FieldRules {
		return validate.FieldRules_builder{String: validate.StringRules_builder{MinLen: proto.Uint64(2)}.Build()}.Build()
	}
	fieldOpts := func(rules *validate.FieldRules) *descriptorpb.FieldOptions {
		o := &descriptorpb.FieldOptions{}
		proto.SetExtension(o, validate.E_Field, rules)
		return o
	}
	msgOpts := func(rules *validate.MessageRules) *descriptorpb.MessageOptions {
		o := &descriptorpb.MessageOptions{}
		proto.SetExtension(o, validate.E_Message, rules)
		return o
	}
	// unknown returns options whose buf.validate extension (number n) holds
	// value as unknown bytes, as a descriptor read from a descriptor set
	// carries it.
	unknown := func(o proto.Message, n protowire.Number, value []byte) proto.Message {
		b := protowire.AppendTag(nil, n, protowire.BytesType)
		o.ProtoReflect().SetUnknown(protowire.AppendBytes(b, value))
		return o
	}
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	field := func(name string, number int32, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *fdp {
		f := &fdp{
			Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(number),
			Type: typ.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		str   = descriptorpb.FieldDescriptorProto_TYPE_STRING
		msg   = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		group = descriptorpb.FieldDescriptorProto_TYPE_GROUP
	)
	ruled := func(f *fdp, rules *validate.FieldRules) *fdp { f.Options = fieldOpts(rules); return f }
	repeated := func(f *fdp) *fdp { f.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(); return f }
	mapOf := func(name, value string, valueType descriptorpb.FieldDescriptorProto_Type, rules *validate.FieldRules) (*fdp, *dp) {
		entry := &dp{
			Name:    proto.String("MEntry"),
			Field:   []*fdp{field("key", 1, str, ""), field("value", 2, valueType, value)},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
		}
		f := repeated(field("m", 1, msg, ".paritytest."+name+".MEntry"))
		if rules != nil {
			f.Options = fieldOpts(rules)
		}
		return f, entry
	}
	mapKeys, mapKeysEntry := mapOf("MapKeys", "", str, validate.FieldRules_builder{Map: validate.MapRules_builder{Keys: minLen2()}.Build()}.Build())
	mapValues, mapValuesEntry := mapOf("MapValues", "", str, validate.FieldRules_builder{Map: validate.MapRules_builder{Values: minLen2()}.Build()}.Build())
	mapLeaves, mapLeavesEntry := mapOf("MapLeaves", ".paritytest.Leaf", msg, nil)
	choice := field("a", 1, str, "")
	choice.OneofIndex = proto.Int32(0)
	oneofRequired := &descriptorpb.OneofOptions{}
	proto.SetExtension(oneofRequired, validate.E_Oneof, validate.OneofRules_builder{Required: proto.Bool(true)}.Build())
	// StringRules with a field no registered extension describes: a
	// predefined rule whose extension the program does not link.
	unlinked := &validate.StringRules{}
	unlinked.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 1_000_000, protowire.VarintType), 1))
	messages := []*dp{
		{Name: proto.String("Leaf"), Field: []*fdp{ruled(field("s", 1, str, ""), minLen2())}},
		{Name: proto.String("Plain"), Field: []*fdp{field("s", 1, str, "")}},
		{Name: proto.String("MessageCel"), Field: []*fdp{field("s", 1, str, "")}, Options: msgOpts(validate.MessageRules_builder{
			Cel: []*validate.Rule{validate.Rule_builder{Id: proto.String("s_set"), Message: proto.String("s must be set"), Expression: proto.String("this.s != ''")}.Build()},
		}.Build())},
		// disabled (field 1) is gone from MessageRules in protovalidate v1.
		{Name: proto.String("MessageDisabled"), Field: []*fdp{field("s", 1, str, "")}, Options: unknown(&descriptorpb.MessageOptions{}, validate.E_Message.TypeDescriptor().Number(), protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)).(*descriptorpb.MessageOptions)},
		{Name: proto.String("MessageOneof"), Field: []*fdp{field("a", 1, str, ""), field("b", 2, str, "")}, Options: msgOpts(validate.MessageRules_builder{
			Oneof: []*validate.MessageOneofRule{validate.MessageOneofRule_builder{Fields: []string{"a", "b"}, Required: proto.Bool(true)}.Build()},
		}.Build())},
		{Name: proto.String("OneofRequired"), Field: []*fdp{choice}, OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("kind"), Options: oneofRequired}}},
		{Name: proto.String("MapKeys"), Field: []*fdp{mapKeys}, NestedType: []*dp{mapKeysEntry}},
		{Name: proto.String("MapValues"), Field: []*fdp{mapValues}, NestedType: []*dp{mapValuesEntry}},
		{Name: proto.String("MapLeaves"), Field: []*fdp{mapLeaves}, NestedType: []*dp{mapLeavesEntry}},
		{Name: proto.String("RepeatedItems"), Field: []*fdp{ruled(repeated(field("r", 1, str, "")), validate.FieldRules_builder{Repeated: validate.RepeatedRules_builder{Items: minLen2()}.Build()}.Build())}},
		{Name: proto.String("RepeatedLeaves"), Field: []*fdp{repeated(field("r", 1, msg, ".paritytest.Leaf"))}},
		{Name: proto.String("UnlinkedRule"), Field: []*fdp{ruled(field("s", 1, str, ""), validate.FieldRules_builder{String: unlinked}.Build())}},
		{Name: proto.String("RuleAsUnknownOption"), Field: []*fdp{func() *fdp {
			f := field("s", 1, str, "")
			f.Options = unknown(&descriptorpb.FieldOptions{}, validate.E_Field.TypeDescriptor().Number(), marshal(minLen2())).(*descriptorpb.FieldOptions)
			return f
		}()}},
		{Name: proto.String("MalformedOption"), Field: []*fdp{func() *fdp {
			f := field("s", 1, str, "")
			f.Options = unknown(&descriptorpb.FieldOptions{}, validate.E_Field.TypeDescriptor().Number(), []byte{0xff}).(*descriptorpb.FieldOptions)
			return f
		}()}},
		{
			Name:           proto.String("Extendable"),
			Field:          []*fdp{field("s", 1, str, "")},
			ExtensionRange: []*descriptorpb.DescriptorProto_ExtensionRange{{Start: proto.Int32(100), End: proto.Int32(200)}},
		},
		{Name: proto.String("AnyIn"), Field: []*fdp{ruled(field("a", 1, msg, ".google.protobuf.Any"), validate.FieldRules_builder{Any: validate.AnyRules_builder{In: []string{"type.googleapis.com/paritytest.Leaf"}}.Build()}.Build())}},
		{Name: proto.String("AnyPlain"), Field: []*fdp{field("a", 1, msg, ".google.protobuf.Any")}},
		{Name: proto.String("Wrapper"), Field: []*fdp{ruled(field("w", 1, msg, ".google.protobuf.StringValue"), minLen2())}},
		{Name: proto.String("Self"), Field: []*fdp{field("next", 1, msg, ".paritytest.Self"), field("leaf", 2, msg, ".paritytest.Leaf")}},
		{Name: proto.String("RecA"), Field: []*fdp{field("b", 1, msg, ".paritytest.RecB")}},
		{Name: proto.String("RecB"), Field: []*fdp{field("a", 1, msg, ".paritytest.RecA"), field("leaf", 2, msg, ".paritytest.Leaf")}},
		{
			Name:       proto.String("Grouped"),
			Field:      []*fdp{field("g", 1, group, ".paritytest.Grouped.G")},
			NestedType: []*dp{{Name: proto.String("G"), Field: []*fdp{ruled(field("s", 2, str, ""), minLen2())}}},
		},
	}
	ext := field("leaf_ext", 100, msg, ".paritytest.Leaf")
	ext.Extendee, ext.JsonName = proto.String(".paritytest.Extendable"), nil
	service := &descriptorpb.ServiceDescriptorProto{Name: proto.String("Parity")}
	for _, m := range messages {
		if m.GetName() == "Leaf" {
			continue
		}
		service.Method = append(service.Method, &descriptorpb.MethodDescriptorProto{
			Name: m.Name, InputType: proto.String(".paritytest." + m.GetName()), OutputType: proto.String(".google.protobuf.Empty"),
		})
	}
	file, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:        proto.String("paritytest/parity.proto"),
		Package:     proto.String("paritytest"),
		Syntax:      proto.String("proto2"),
		Dependency:  []string{"google/protobuf/any.proto", "google/protobuf/wrappers.proto", "google/protobuf/empty.proto"},
		MessageType: messages,
		Extension:   []*fdp{ext},
		Service:     []*descriptorpb.ServiceDescriptorProto{service},
	}, protoregistry.GlobalFiles)
	if err != nil {
		tb.Fatal(err)
	}
	return file
}

// TestValidationParity sends messages of every shape a buf.validate rule
// can take (message, oneof and field rules, map keys and values, list
// items, Any, wrappers, groups, recursive types, options that do not
// resolve, extensions of the message) through a kit server's chain and
// checks that the call fails exactly as protovalidate's global validator
// judges the message: no violation, the same violations, or the same
// compilation error. Validation skips the types it finds rule-free
// (interceptors/validation_rules.go), so a type it wrongly took for one
// would pass here while protovalidate reports it.
func TestValidationParity(t *testing.T) {
	t.Parallel()
	file := parityFile(t)
	methods := file.Services().ByName("Parity").Methods()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		mux := http.NewServeMux()
		for i := range methods.Len() {
			m := methods.Get(i)
			path := "/paritytest.Parity/" + string(m.Name())
			mux.Handle(path, connect.NewUnaryHandler(path,
				func(context.Context, *connect.Request[dynamicpb.Message]) (*connect.Response[emptypb.Empty], error) {
					return connect.NewResponse(&emptypb.Empty{}), nil
				}, append(srv.HandlerOptions(), connect.WithSchema(m), connect.WithRequestInitializer(dynamicInit(m.Input())))...))
		}
		srv.Mount("/paritytest.Parity/", mux)
	})
	leafExt := dynamicpb.NewExtensionType(file.Extensions().ByName("leaf_ext"))
	// build returns a message of type name with the fields set, by path
	// ("g.s", "next.next.leaf.s"), to a string; set, if given, sets more.
	build := func(name string, strs map[string]string, set func(*dynamicpb.Message)) *dynamicpb.Message {
		m := dynamicpb.NewMessage(file.Messages().ByName(protoreflect.Name(name)))
		for path, v := range strs {
			setPath(m, path, v)
		}
		if set != nil {
			set(m)
		}
		return m
	}
	leaf := func(s string) *dynamicpb.Message { return build("Leaf", map[string]string{"s": s}, nil) }
	anyOf := func(typeURL string, m proto.Message) protoreflect.Value {
		a := &anypb.Any{TypeUrl: typeURL}
		if m != nil {
			a.Value, _ = proto.Marshal(m)
		}
		return protoreflect.ValueOfMessage(a.ProtoReflect())
	}
	mapEntry := func(k string, v protoreflect.Value) func(*dynamicpb.Message) {
		return func(m *dynamicpb.Message) {
			fd := m.Descriptor().Fields().ByName("m")
			m.Mutable(fd).Map().Set(protoreflect.ValueOfString(k).MapKey(), v)
		}
	}
	listOf := func(field string, vs ...protoreflect.Value) func(*dynamicpb.Message) {
		return func(m *dynamicpb.Message) {
			l := m.Mutable(m.Descriptor().Fields().ByName(protoreflect.Name(field))).List()
			for _, v := range vs {
				l.Append(v)
			}
		}
	}
	cases := []struct {
		name string
		msg  *dynamicpb.Message
	}{
		{name: "no rules", msg: build("Plain", map[string]string{"s": "x"}, nil)},
		{name: "message cel broken", msg: build("MessageCel", nil, nil)},
		{name: "message cel kept", msg: build("MessageCel", map[string]string{"s": "x"}, nil)},
		{name: "message disabled", msg: build("MessageDisabled", nil, nil)},
		{name: "message oneof broken", msg: build("MessageOneof", nil, nil)},
		{name: "message oneof kept", msg: build("MessageOneof", map[string]string{"a": "x"}, nil)},
		{name: "oneof required broken", msg: build("OneofRequired", nil, nil)},
		{name: "map key rule broken", msg: build("MapKeys", nil, mapEntry("k", protoreflect.ValueOfString("vv")))},
		{name: "map value rule broken", msg: build("MapValues", nil, mapEntry("kk", protoreflect.ValueOfString("v")))},
		{name: "map of messages with a rule broken", msg: build("MapLeaves", nil, mapEntry("kk", protoreflect.ValueOfMessage(leaf("v"))))},
		{name: "list item rule broken", msg: build("RepeatedItems", nil, listOf("r", protoreflect.ValueOfString("ok"), protoreflect.ValueOfString("x")))},
		{name: "list of messages with a rule broken", msg: build("RepeatedLeaves", nil, listOf("r", protoreflect.ValueOfMessage(leaf("x"))))},
		{name: "predefined rule not linked", msg: build("UnlinkedRule", map[string]string{"s": "x"}, nil)},
		{name: "rule as unknown option bytes broken", msg: build("RuleAsUnknownOption", map[string]string{"s": "x"}, nil)},
		{name: "malformed option", msg: build("MalformedOption", map[string]string{"s": "x"}, nil)},
		{name: "extension holding a broken rule", msg: build("Extendable", nil, func(m *dynamicpb.Message) {
			m.Set(leafExt.TypeDescriptor(), protoreflect.ValueOfMessage(leaf("x")))
		})},
		{name: "any in broken", msg: build("AnyIn", nil, func(m *dynamicpb.Message) {
			m.Set(m.Descriptor().Fields().ByName("a"), anyOf("type.googleapis.com/paritytest.Plain", nil))
		})},
		{name: "any without rules holding a broken leaf", msg: build("AnyPlain", nil, func(m *dynamicpb.Message) {
			m.Set(m.Descriptor().Fields().ByName("a"), anyOf("type.googleapis.com/paritytest.Leaf", leaf("x")))
		})},
		{name: "wrapper rule broken", msg: build("Wrapper", map[string]string{"w.value": "x"}, nil)},
		{name: "recursive, deep rule broken", msg: build("Self", map[string]string{"next.next.leaf.s": "x"}, nil)},
		{name: "mutually recursive, rule after a revisit broken", msg: build("RecA", map[string]string{"b.a.b.leaf.s": "x"}, nil)},
		{name: "mutually recursive kept", msg: build("RecA", map[string]string{"b.a.b.leaf.s": "xx"}, nil)},
		{name: "group rule broken", msg: build("Grouped", map[string]string{"g.s": "x"}, nil)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := protovalidate.GlobalValidator.Validate(tc.msg)
			name := string(tc.msg.Descriptor().Name())
			client := connect.NewClient[dynamicpb.Message, emptypb.Empty](s.HTTP1Client(), s.URL+"/paritytest.Parity/"+name)
			_, err := client.CallUnary(t.Context(), connect.NewRequest(tc.msg))
			assertSameVerdict(t, err, want)
		})
	}
}

// assertSameVerdict checks that a call failed as protovalidate's verdict
// want says: not at all, or with InvalidArgument carrying its violations
// or its error's text.
func assertSameVerdict(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("the chain failed the call (%v) where protovalidate reports nothing", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("the chain passed the message where protovalidate reports %v", want)
	}
	if code := connect.CodeOf(err); code != connect.CodeInvalidArgument {
		t.Fatalf("code %v, want invalid_argument (%v)", code, err)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("not a connect error: %v", err)
	}
	var ve *protovalidate.ValidationError
	if !errors.As(want, &ve) {
		if ce.Message() != want.Error() {
			t.Errorf("message %q, want protovalidate's %q", ce.Message(), want.Error())
		}
		return
	}
	for _, d := range ce.Details() {
		if d.Type() != "buf.validate.Violations" {
			continue
		}
		got, derr := d.Value()
		if derr != nil {
			t.Fatal(derr)
		}
		if !proto.Equal(got, ve.ToProto()) {
			t.Errorf("violations %v, want protovalidate's %v", got, ve.ToProto())
		}
		return
	}
	t.Errorf("no buf.validate.Violations detail in %v; protovalidate reports %v", err, want)
}

// setPath sets the string at a dotted path of singular fields in m,
// making the messages on the way.
func setPath(m protoreflect.Message, path string, v string) {
	for {
		name, rest, more := strings.Cut(path, ".")
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if !more {
			m.Set(fd, protoreflect.ValueOfString(v))
			return
		}
		m, path = m.Mutable(fd).Message(), rest
	}
}
