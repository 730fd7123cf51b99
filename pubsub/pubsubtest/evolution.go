package pubsubtest

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/validate"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	schemav1 "github.com/connectkit/connectkit/internal/gen/connectkit/schema/v1"
	schemav2 "github.com/connectkit/connectkit/internal/gen/connectkit/schema/v2"
	"github.com/connectkit/connectkit/pubsub"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The tests of this file run two versions of one schema side by side, as a
// rolling deploy does: the program's generated connectkit.schema.v1.Changed
// (or connectkit.ping.v1.PingRequest) is one version, and the other is
// derived from its descriptor with dynamicpb, under the same full name,
// and published with the headers a Publisher of that version sets.

// otherVersion returns the message md as another version of its schema has
// it: change edits a copy of md's descriptor.
func otherVersion(tb testing.TB, md protoreflect.MessageDescriptor, change func(*descriptorpb.DescriptorProto)) protoreflect.MessageDescriptor {
	tb.Helper()
	fdp := protodesc.ToFileDescriptorProto(md.ParentFile())
	var found *descriptorpb.DescriptorProto
	for _, m := range fdp.GetMessageType() {
		if m.GetName() == string(md.Name()) {
			found = m
		}
	}
	if found == nil {
		tb.Fatalf("message %s is not at the top of its file", md.FullName())
	}
	change(found)
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles) // its imports: validate.proto
	if err != nil {
		tb.Fatalf("descriptor of the other version of %s: %v", md.FullName(), err)
	}
	return fd.Messages().ByName(md.Name())
}

// dynamicMessage returns a message of md with the fields named in values set.
func dynamicMessage(md protoreflect.MessageDescriptor, values map[string]protoreflect.Value) *dynamicpb.Message {
	msg := dynamicpb.NewMessage(md)
	for name, v := range values {
		msg.Set(md.Fields().ByName(protoreflect.Name(name)), v)
	}
	return msg
}

// publishAs publishes msg to topic through the broker alone, with the
// headers that a Publisher of msg's version sets: what another build of the
// program publishes.
func publishAs(tb testing.TB, b pubsub.Broker, topic, id string, msg proto.Message, json bool) {
	tb.Helper()
	contentType, data, err := pubsub.ContentTypeProto, []byte(nil), error(nil)
	if json {
		contentType = pubsub.ContentTypeJSON
		data, err = protojson.Marshal(msg)
	} else {
		data, err = proto.Marshal(msg)
	}
	if err != nil {
		tb.Fatalf("encode %s: %v", id, err)
	}
	conf, err := b.Publish(context.Background(), &pubsub.Message{ID: id, Topic: topic, Data: data, Header: http.Header{
		pubsub.HeaderContentType: {contentType},
		pubsub.HeaderMessageType: {string(msg.ProtoReflect().Descriptor().FullName())},
	}})
	if err == nil {
		err = conf.Wait(context.Background())
	}
	if err != nil {
		tb.Fatalf("publish %s: %v", id, err)
	}
}

// received records the messages a handler took, by message id.
type received[M any] struct {
	mu   sync.Mutex
	msgs map[string]*M
}

func (r *received[M]) handler(ctx context.Context, msg *M) error {
	info, _ := pubsub.MessageInfoFrom(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msgs == nil {
		r.msgs = map[string]*M{}
	}
	r.msgs[info.ID] = msg
	return nil
}

func (r *received[M]) get(id string) *M {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[id]
}

func (r *received[M]) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// validating is the handler option of a subscriber whose chain validates
// deliveries, as kit's does.
func validating() pubsub.Option {
	return pubsub.WithHandlerOptions(connect.WithInterceptors(validate.NewInterceptor()))
}

// deadLettersByID waits for n dead letters of topic and subscription and
// returns them by message id.
func deadLettersByID(tb testing.TB, b pubsub.Broker, topic, subscription string, n int) map[string]*pubsub.DeadLetter {
	tb.Helper()
	out := map[string]*pubsub.DeadLetter{}
	for _, dl := range waitDeadLetters(tb, b, topic, subscription, n) {
		out[dl.Message.ID] = dl
	}
	return out
}

// testNewSchemaToOldHandler publishes messages of a newer schema (a field
// and an enum value added) to handlers of the older one, in binary and in
// JSON. Unknown fields are handled, as protobuf's compatibility rules say
// (binary keeps them, JSON drops them); an enum value the handler's schema
// does not know reads as its number in binary and as the zero value in
// JSON, which a validating chain whose rules allow only defined values
// dead-letters at once with the violation, while a chain without
// validation hands it to the handler.
func testNewSchemaToOldHandler(t *testing.T, h *harness) {
	newer := otherVersion(t, (&schemav1.Changed{}).ProtoReflect().Descriptor(), func(m *descriptorpb.DescriptorProto) {
		m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{
			Name: proto.String("region"), JsonName: proto.String("region"), Number: proto.Int32(3),
			Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		})
		kind := m.GetEnumType()[0]
		kind.Value = append(kind.Value, &descriptorpb.EnumValueDescriptorProto{Name: proto.String("KIND_ARCHIVED"), Number: proto.Int32(3)})
	})
	archived := protoreflect.ValueOfEnum(3)
	created := protoreflect.ValueOfEnum(protoreflect.EnumNumber(schemav1.Changed_KIND_CREATED))
	withField := dynamicMessage(newer, map[string]protoreflect.Value{"kind": created, "name": protoreflect.ValueOfString("a"), "region": protoreflect.ValueOfString("eu")})
	withEnum := dynamicMessage(newer, map[string]protoreflect.Value{"kind": archived, "name": protoreflect.ValueOfString("b")})

	var strict, lenient received[schemav1.Changed]
	Start(t, newSubscriber(t, h.broker, "evolve", "strict", strict.handler, validating(), pubsub.WithDelivery(testDelivery())))
	Start(t, newSubscriber(t, h.broker, "evolve", "lenient", lenient.handler, pubsub.WithDelivery(testDelivery())))
	publishAs(t, h.broker, "evolve", "field-proto", withField, false)
	publishAs(t, h.broker, "evolve", "field-json", withField, true)
	publishAs(t, h.broker, "evolve", "enum-proto", withEnum, false)
	publishAs(t, h.broker, "evolve", "enum-json", withEnum, true)

	WaitFor(t, "the lenient subscription to handle all four", func() bool { return lenient.count() == 4 })
	dls := deadLettersByID(t, h.broker, "evolve", "strict", 2)
	WaitFor(t, "the strict subscription to handle the two with a known kind", func() bool { return strict.count() == 2 })

	for _, r := range []*received[schemav1.Changed]{&strict, &lenient} {
		for _, id := range []string{"field-proto", "field-json"} {
			got := r.get(id)
			if got.GetKind() != schemav1.Changed_KIND_CREATED || got.GetName() != "a" {
				t.Errorf("%s: handler got %v, want the fields its schema knows", id, got)
			}
		}
	}
	// Binary keeps the unknown field, so that a handler that passes the
	// message on (or stores its bytes) loses nothing; JSON cannot.
	if got := strict.get("field-proto").ProtoReflect().GetUnknown(); len(got) == 0 {
		t.Error("field-proto: the unknown field of the newer schema was not kept")
	}
	if got := lenient.get("enum-proto"); got.GetKind() != 3 || got.GetName() != "b" {
		t.Errorf("enum-proto without validation: handler got %v, want kind 3 (the number) and name b", got)
	}
	if got := lenient.get("enum-json"); got.GetKind() != schemav1.Changed_KIND_UNSPECIFIED || got.GetName() != "b" {
		t.Errorf("enum-json without validation: handler got %v, want kind unspecified (the unknown name dropped) and name b", got)
	}
	for id, dl := range dls {
		if strict.get(id) != nil {
			t.Errorf("%s: handled and dead-lettered", id)
		}
		if !strings.HasPrefix(id, "enum-") || dl.Reason != pubsub.ReasonPermanent || dl.Attempts != 1 || !strings.Contains(dl.Error, "kind") {
			t.Errorf("dead letter %s: reason %q after %d attempts, error %q; want only the unknown enum values, %q after 1 attempt, naming the field",
				id, dl.Reason, dl.Attempts, dl.Error, pubsub.ReasonPermanent)
		}
	}
}

// testOldSchemaToNewHandler publishes messages of an older schema (without
// a field the handler's has, and with a field the handler's renamed) to
// handlers of the newer one: the missing field reads as its zero value; a
// renamed field keeps its value in binary, but JSON names fields, so in
// JSON the handler's schema does not know the old name and drops it.
func testOldSchemaToNewHandler(t *testing.T, h *harness) {
	current := (&schemav1.Changed{}).ProtoReflect().Descriptor()
	without := otherVersion(t, current, func(m *descriptorpb.DescriptorProto) {
		m.Field = m.Field[:1] // kind only: name is new
	})
	renamed := otherVersion(t, current, func(m *descriptorpb.DescriptorProto) {
		m.Field[1].Name, m.Field[1].JsonName = proto.String("title"), proto.String("title")
	})
	created := protoreflect.ValueOfEnum(protoreflect.EnumNumber(schemav1.Changed_KIND_CREATED))
	var rec received[schemav1.Changed]
	Start(t, newSubscriber(t, h.broker, "evolve-old", "s", rec.handler, validating(), pubsub.WithDelivery(testDelivery())))
	for _, json := range []bool{false, true} {
		suffix := map[bool]string{false: "-proto", true: "-json"}[json]
		publishAs(t, h.broker, "evolve-old", "without"+suffix, dynamicMessage(without, map[string]protoreflect.Value{"kind": created}), json)
		publishAs(t, h.broker, "evolve-old", "renamed"+suffix, dynamicMessage(renamed, map[string]protoreflect.Value{"kind": created, "title": protoreflect.ValueOfString("t")}), json)
	}
	WaitFor(t, "four messages", func() bool { return rec.count() == 4 })
	for id, want := range map[string]string{"without-proto": "", "without-json": "", "renamed-proto": "t", "renamed-json": ""} {
		if got := rec.get(id); got.GetKind() != schemav1.Changed_KIND_CREATED || got.GetName() != want {
			t.Errorf("%s: handler got %v, want kind created and name %q", id, got, want)
		}
	}
}

// testMovedType publishes a message whose type moved to another package
// (same fields, another full name) to a handler of the new type: its type
// header names the old type, so it is dead-lettered as a type mismatch,
// and so is it again when re-driven, since a re-drive keeps the headers.
func testMovedType(t *testing.T, h *harness) {
	var moved received[schemav2.Changed]
	var old received[schemav1.Changed]
	Start(t, newSubscriber(t, h.broker, "moved", "new", moved.handler, validating(), pubsub.WithDelivery(testDelivery())))
	Start(t, newSubscriber(t, h.broker, "moved", "old", old.handler, validating(), pubsub.WithDelivery(testDelivery())))
	pub, err := pubsub.NewPublisher[schemav1.Changed](h.broker, "moved")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &schemav1.Changed{Kind: schemav1.Changed_KIND_CREATED, Name: "m"}, pubsub.WithMessageID("m")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the old type's handler", func() bool { return old.count() == 1 })
	dl := waitDeadLetters(t, h.broker, "moved", "new", 1)[0]
	check := func(dl *pubsub.DeadLetter) {
		t.Helper()
		if dl.Reason != pubsub.ReasonTypeMismatch || dl.Attempts != 1 ||
			!strings.Contains(dl.Error, "connectkit.schema.v1.Changed") || !strings.Contains(dl.Error, "connectkit.schema.v2.Changed") {
			t.Errorf("dead letter: reason %q after %d attempts, error %q; want %q after 1, naming both types", dl.Reason, dl.Attempts, dl.Error, pubsub.ReasonTypeMismatch)
		}
	}
	check(dl)
	if err := h.broker.Redrive(t.Context(), dl); err != nil {
		t.Fatal(err)
	}
	var again []*pubsub.DeadLetter
	WaitFor(t, "the re-driven message's dead letter", func() bool {
		again = deadLetters(t, h.broker, "moved", "new")
		return len(again) == 1 && again[0].Ref != dl.Ref
	})
	check(again[0])
	if n := moved.count(); n != 0 {
		t.Errorf("the new type's handler took %d messages of the old type", n)
	}
}

// testStricterRules delivers a message that the handler's rules reject but
// the publisher's (an older version's, without the rule) allowed: a
// validating chain dead-letters it at once, without calling the handler,
// and again at once when it is re-driven, never retrying it.
func testStricterRules(t *testing.T, h *harness) {
	var calls sync.Map
	sub := newSubscriber(t, h.broker, "stricter", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		calls.Store(info.ID, true)
		return nil
	}, validating(), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "stricter", pubsub.WithoutValidation())
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: -1}, pubsub.WithMessageID("negative")); err != nil {
		t.Fatal(err)
	}
	dl := waitDeadLetters(t, h.broker, "stricter", "s", 1)[0]
	check := func(dl *pubsub.DeadLetter) {
		t.Helper()
		if dl.Reason != pubsub.ReasonPermanent || dl.Attempts != 1 || !strings.Contains(dl.Error, "invalid_argument") || !strings.Contains(dl.Error, "number") {
			t.Errorf("dead letter: reason %q after %d attempts, error %q; want %q after 1, with the violation", dl.Reason, dl.Attempts, dl.Error, pubsub.ReasonPermanent)
		}
	}
	check(dl)
	if err := h.broker.Redrive(t.Context(), dl); err != nil {
		t.Fatal(err)
	}
	var again []*pubsub.DeadLetter
	WaitFor(t, "the re-driven message's dead letter", func() bool {
		again = deadLetters(t, h.broker, "stricter", "s")
		return len(again) == 1 && again[0].Ref != dl.Ref
	})
	check(again[0])
	if _, ok := calls.Load("negative"); ok {
		t.Error("the handler was called with a message its rules reject")
	}
}
