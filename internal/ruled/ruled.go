// Package ruled asks protovalidate about a message only when its type, or a
// message type it holds, carries buf.validate rules, for the validating
// interceptors of package interceptors and of pubsub's publishers.
package ruled

import (
	"sync"
	"sync/atomic"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Validator passes a message to its inner validator only when the
// message's type, or a type it holds (a message field's, a list's or a map
// value's, transitively), carries protovalidate rules: a message without any
// is valid as it is. protovalidate's global validator builds its CEL
// environment on its first message, rules or none, and keeps it (~0.8 MB
// of heap and ~2 ms on the first call, BENCHMARKS.md section 12), so a
// service whose messages carry no rules never builds it.
//
// Make one for each procedure or publisher, which meets one or two
// message types (its requests, and its responses when they are validated
// too): it remembers the last two in recent, so that a call compares
// descriptors and does not hash one into the map of [Types].
type Validator struct {
	inner  protovalidate.Validator
	types  *Types
	recent [2]atomic.Pointer[ruledType]
}

// Types holds whether each message type met holds rules, for the
// validators that share it. Its zero value is empty and ready.
type Types struct {
	m sync.Map // protoreflect.MessageDescriptor → *ruledType
}

// NewValidator returns a Validator that asks inner about the messages whose
// types hold rules, and keeps what it learns of a type in types.
func NewValidator(inner protovalidate.Validator, types *Types) *Validator {
	return &Validator{inner: inner, types: types}
}

// ruledType is a message type and whether it holds rules.
type ruledType struct {
	desc  protoreflect.MessageDescriptor
	ruled bool
}

// Validate implements [protovalidate.Validator].
func (v *Validator) Validate(msg proto.Message, opts ...protovalidate.ValidationOption) error {
	desc := msg.ProtoReflect().Descriptor()
	t := v.recent[0].Load()
	if t == nil || t.desc != desc {
		if t = v.recent[1].Load(); t == nil || t.desc != desc {
			t = v.lookup(desc)
		}
	}
	if !t.ruled {
		return nil
	}
	return v.inner.Validate(msg, opts...)
}

// lookup returns desc's entry in v's Types, and keeps it in recent:
// in the first slot while that is empty, in the second after.
func (v *Validator) lookup(desc protoreflect.MessageDescriptor) *ruledType {
	t, ok := v.types.m.Load(desc)
	if !ok {
		t, _ = v.types.m.LoadOrStore(desc, &ruledType{desc: desc, ruled: hasRules(desc, map[protoreflect.FullName]bool{})})
	}
	rt := t.(*ruledType)
	if !v.recent[0].CompareAndSwap(nil, rt) {
		v.recent[1].Store(rt)
	}
	return rt
}

// hasRules reports whether desc or a message type reachable from its fields
// carries a buf.validate message, oneof or field option. An option that
// does not resolve counts as a rule, so that protovalidate reports it.
// seen holds the types being walked, which a recursive type meets again.
func hasRules(desc protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[desc.FullName()] {
		return false
	}
	seen[desc.FullName()] = true
	if rules, err := protovalidate.ResolveMessageRules(desc); rules != nil || err != nil {
		return true
	}
	oneofs := desc.Oneofs()
	for i := range oneofs.Len() {
		if rules, err := protovalidate.ResolveOneofRules(oneofs.Get(i)); rules != nil || err != nil {
			return true
		}
	}
	fields := desc.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if rules, err := protovalidate.ResolveFieldRules(fd); rules != nil || err != nil {
			return true
		}
		// A map's message is its entry type, whose value field leads on.
		if md := fd.Message(); md != nil && hasRules(md, seen) {
			return true
		}
	}
	return false
}
