package interceptors

import (
	"sync"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ruledValidator passes a message to its inner validator only when the
// message's type, or a type it holds (a message field's, a list's or a map
// value's, transitively), carries protovalidate rules: a message without any
// is valid as it is. protovalidate's global validator builds its CEL
// environment on its first message, rules or none, and keeps it (~0.8 MB
// of heap and ~2 ms on the first call, BENCHMARKS.md section 12), so a
// service whose messages carry no rules never builds it.
type ruledValidator struct {
	inner protovalidate.Validator
	ruled sync.Map // protoreflect.MessageDescriptor → bool
}

// Validate implements [protovalidate.Validator].
func (v *ruledValidator) Validate(msg proto.Message, opts ...protovalidate.ValidationOption) error {
	desc := msg.ProtoReflect().Descriptor()
	ruled, ok := v.ruled.Load(desc)
	if !ok {
		ruled, _ = v.ruled.LoadOrStore(desc, hasRules(desc, map[protoreflect.FullName]bool{}))
	}
	if !ruled.(bool) {
		return nil
	}
	return v.inner.Validate(msg, opts...)
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
