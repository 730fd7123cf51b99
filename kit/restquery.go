package kit

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file sets the query parameters of a REST call that vanguard v0.4.0
// gets wrong, as grpc-gateway sets them, or refuses them with 400
// InvalidArgument naming the parameter:
//
//   - a repeated well-known type (?times=2020-01-01T00:00:00Z on a
//     repeated google.protobuf.Timestamp, Duration, wrapper or FieldMask):
//     vanguard panics making a list where it unmarshals one message;
//   - a map entry, ?labels[k]=v, which vanguard ignores as a name of no
//     field, where grpc-gateway sets it;
//   - a singular well-known type whose value does not parse (?time=x):
//     vanguard's message quotes the value from a buffer it has overwritten
//     ("value for type \"message\": \"");
//   - a field of a Timestamp or Duration out of its range
//     (?time.nanos=-5), which vanguard and grpc-gateway set, handing the
//     method a Timestamp that is no time, which its response then fails to
//     encode;
//   - a google.protobuf.Struct, Value or ListValue, whose JSON
//     (?filter={"kind":"book"}) grpc-gateway reads (a Struct's and a
//     Value's), where vanguard refuses it.
//
// Vanguard parses the query after it routes the call, in unexported code,
// and kit does not re-implement its router to tell which method a REST
// request calls: [restRoutes.serve] takes such a parameter out of the query
// vanguard sees when a routed request message that has its field gives it
// one of these meanings (see [routeMethods.holds]; a singular well-known
// type's value only when it does not parse), and the method's handler,
// which knows its request message, sets it in the message vanguard made as
// that message has it, or answers the error (see [heldQuery.apply]): a
// name that one routed request gives one of these meanings and another a
// field vanguard sets right (a "times" of Timestamps in one, of strings in
// another) is set by kit on both routes, where vanguard panicked on the
// first. Only a request with a parameter whose name has a "[" or starts
// with the name of a field that is a map or a well-known type, or a
// message holding one, in some routed request (see [addQueryFields]) pays
// more than a scan of its parameter names.

// queryKind is what a query parameter's name is to a request message.
type queryKind int

const (
	queryUnknown  queryKind = iota // it names no field: ignored
	queryPlain                     // a field vanguard sets right, or refuses as a message
	queryRefused                   // a field inside a list, map or scalar, or an empty element: refused
	queryList                      // a repeated well-known type
	queryMapKey                    // name[key], an entry of a map
	queryMap                       // a map, without [key]
	queryWKT                       // a singular well-known type
	queryWKTField                  // a field of a Timestamp or Duration
)

// heldParam is a query parameter taken out of the query vanguard sees,
// with its values, in order; or, with mask, the FieldMask field name,
// whose paths mask returns once vanguard has read the body (see
// [patchMask]).
type heldParam struct {
	name   string
	values []string
	mask   func() ([]string, error)
}

// heldQuery is what [restRoutes.serve] took out of a REST call's query.
type heldQuery []heldParam

// heldQueryKey is the context key of a REST call's [heldQuery].
type heldQueryKey struct{}

// addQueryFields records in names the names (JSON and proto) of the
// fields of md, a routed request message: true for those whose query
// parameters [routeMethods.holdQuery] may take (maps, well-known types,
// and singular messages holding one), false for the others, whose
// parameters it takes with a [key] alone.
func addQueryFields(names map[string]bool, md protoreflect.MessageDescriptor) {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		held := queryField(fd, map[protoreflect.FullName]bool{})
		names[fd.JSONName()] = names[fd.JSONName()] || held
		names[string(fd.Name())] = names[string(fd.Name())] || held
	}
}

// queryField says whether fd is a map or a well-known type, or a singular
// message holding one (its fields, theirs, and so on, each message once:
// seen are those looked at).
func queryField(fd protoreflect.FieldDescriptor, seen map[protoreflect.FullName]bool) bool {
	if fd.IsMap() || scalarWKT(fd) || jsonWKT(fd) {
		return true
	}
	md := fd.Message()
	if md == nil || fd.IsList() || wellKnown(md) || seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		if queryField(fields.Get(i), seen) {
			return true
		}
	}
	return false
}

// wellKnown says whether md is one of protobuf's well-known types.
func wellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile() != nil && md.ParentFile().Package() == "google.protobuf"
}

// scalarWKT says whether fd is a message field of a well-known type that
// JSON writes as a scalar, which vanguard takes from a query parameter.
func scalarWKT(fd protoreflect.FieldDescriptor) bool {
	md := fd.Message()
	if md == nil || !wellKnown(md) {
		return false
	}
	switch md.Name() {
	case "BoolValue", "BytesValue", "DoubleValue", "Duration", "Empty", "FieldMask", "FloatValue",
		"Int32Value", "Int64Value", "StringValue", "Timestamp", "UInt32Value", "UInt64Value":
		return true
	}
	return false
}

// jsonWKT says whether fd is a message field of google.protobuf.Struct,
// Value or ListValue, whose query parameter is its JSON
// (?filter={"kind":"book"}), as grpc-gateway reads a Struct's and a
// Value's (and refuses a ListValue's); vanguard refuses the three.
func jsonWKT(fd protoreflect.FieldDescriptor) bool {
	md := fd.Message()
	if md == nil || !wellKnown(md) {
		return false
	}
	switch md.Name() {
	case "Struct", "Value", "ListValue":
		return true
	}
	return false
}

// resolveQuery resolves name, a query parameter's, unescaped, against md
// as vanguard does (each element a field's JSON name, or else its proto
// name, through singular message fields), and says what it is: the path of
// fields it names, the key of a map entry ("labels[k]"), and its kind.
func resolveQuery(md protoreflect.MessageDescriptor, name string) ([]protoreflect.FieldDescriptor, string, queryKind) {
	path, key, entry := name, "", false
	if i := strings.IndexByte(name, '['); i >= 0 {
		if i == 0 || !strings.HasSuffix(name, "]") {
			return nil, "", queryUnknown // vanguard finds no such field
		}
		path, key, entry = name[:i], name[i+1:len(name)-1], true
	}
	var fields []protoreflect.FieldDescriptor
	for part := range strings.SplitSeq(path, ".") {
		if part == "" {
			// Vanguard reads an empty element as one that names no field
			// (see lastElementNamed): ignored after a message, refused
			// after a list, a map or a scalar.
			if len(fields) == 0 {
				return nil, "", queryUnknown
			}
			if parent := fields[len(fields)-1]; parent.IsList() || parent.IsMap() || parent.Message() == nil {
				return fields, "", queryRefused
			}
			return nil, "", queryUnknown
		}
		if len(fields) > 0 {
			parent := fields[len(fields)-1]
			if parent.IsList() || parent.IsMap() || parent.Message() == nil {
				return fields, "", queryRefused
			}
			md = parent.Message()
		}
		fd := md.Fields().ByJSONName(part)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(part))
		}
		if fd == nil {
			return nil, "", queryUnknown
		}
		fields = append(fields, fd)
	}
	fd := fields[len(fields)-1]
	switch {
	case wellKnown(md):
		if !entry && len(fields) > 1 && (md.Name() == "Timestamp" || md.Name() == "Duration") {
			return fields, "", queryWKTField
		}
		if entry {
			return nil, "", queryUnknown // vanguard finds no such field
		}
		return fields, "", queryPlain
	case entry:
		return fields, key, queryMapKey
	case fd.IsMap():
		return fields, "", queryMap
	case (scalarWKT(fd) || jsonWKT(fd)) && fd.IsList():
		return fields, "", queryList
	case scalarWKT(fd) || jsonWKT(fd):
		return fields, "", queryWKT
	}
	return fields, "", queryPlain
}

// holdQuery returns query, a REST call's, escaped, without the parameters
// that vanguard would get wrong in a routed request message that has
// their field (see [routeMethods.holds]), and those parameters; query
// itself, and nil, when it has
// none, as it has, without allocating, when no parameter's name has a
// first element that m.queryNames holds, or, with a "[", names.
func (m *routeMethods) holdQuery(query string) (string, heldQuery) {
	return takeQuery(query, m.holds)
}

// wholeQuery returns the parameters of query, a REST call's, escaped, as
// url.ParseQuery reads them (one with a ";" or an escape that does not
// unescape dropped), in their order: those that kit sets in the request
// message when vanguard sets none (see [lostQuery]).
func wholeQuery(query string) heldQuery {
	_, q := takeQuery(query, func(pair string) bool {
		name, value, _ := strings.Cut(pair, "=")
		_, errName := url.QueryUnescape(name)
		_, errValue := url.QueryUnescape(value)
		return pair != "" && strings.IndexByte(pair, ';') < 0 && errName == nil && errValue == nil
	})
	return q
}

// takeQuery returns query, escaped, without the parameters ("name=value")
// that take says to take, and those parameters, unescaped, each name once
// with its values in order; query itself, and nil, without allocating,
// when it takes none.
func takeQuery(query string, take func(pair string) bool) (string, heldQuery) {
	var kept strings.Builder
	var held heldQuery
	// index is each held name's place in held: a map, where a scan of
	// held cost the square of the names' number (16 s for a query of
	// 64 000 map entries, ?labels[k0]=v&labels[k1]=v...).
	var index map[string]int
	for i := 0; i < len(query); {
		end := strings.IndexByte(query[i:], '&')
		if end < 0 {
			end = len(query)
		} else {
			end += i
		}
		pair := query[i:end]
		if take(pair) {
			if held == nil {
				kept.WriteString(strings.TrimSuffix(query[:i], "&"))
				index = map[string]int{}
			}
			name, value, _ := strings.Cut(pair, "=")
			name, _ = url.QueryUnescape(name)
			value, _ = url.QueryUnescape(value)
			if j, ok := index[name]; ok {
				held[j].values = append(held[j].values, value)
			} else {
				index[name] = len(held)
				held = append(held, heldParam{name: name, values: []string{value}})
			}
		} else if held != nil {
			if kept.Len() > 0 {
				kept.WriteByte('&')
			}
			kept.WriteString(pair)
		}
		i = end + 1
	}
	if held == nil {
		return query, nil
	}
	return kept.String(), held
}

// holds says whether pair, a query's "name=value", escaped, is a parameter
// that vanguard gets wrong (see [queryKind]) in a routed request message.
// Vanguard routes the call after kit has given it the query, and so such a
// parameter is held from every route, whatever another route's request
// makes of its name (a string list "times" beside a list of Timestamps):
// [heldQuery.apply] sets it as each request has it.
func (m *routeMethods) holds(pair string) bool {
	name, value, _ := strings.Cut(pair, "=")
	if strings.IndexByte(pair, ';') >= 0 {
		return false // url.ParseQuery, and so vanguard, drops it
	}
	if strings.ContainsAny(name, "%+") {
		var err error
		if name, err = url.QueryUnescape(name); err != nil {
			return false
		}
	}
	first := name
	if i := strings.IndexAny(name, ".["); i >= 0 {
		first = name[:i]
	}
	// A name of no field, even with a "[" (?utm[k]=v), is vanguard's to
	// ignore, unresolved: the loop below costs a resolution a routed
	// request (36 ms for 4 600 such names and 200 routed request types,
	// BenchmarkHoldQueryUnknownKeys).
	if mayHold, field := m.queryNames[first]; !mayHold && (!field || strings.IndexByte(name, '[') < 0) {
		return false
	}
	value, err := url.QueryUnescape(value)
	if err != nil {
		return false
	}
	// read is the well-known type last found valid for value: the same
	// field in many routed requests (the update_mask of 50 Update
	// methods) is read once, where each read cost 1.6 µs and 15
	// allocations (BenchmarkHoldQueryValidWKT).
	var read protoreflect.FullName
	for _, md := range m.inputs {
		fields, _, kind := resolveQuery(md, name)
		switch kind {
		case queryList, queryMapKey, queryMap:
			return true
		case queryWKT:
			// Held only when vanguard fails it: it sets a valid one right.
			fd := fields[len(fields)-1]
			if fd.Message().FullName() == read {
				continue
			}
			if !vanguardReads(fd, value) {
				return true
			}
			read = fd.Message().FullName()
		case queryWKTField:
			if wktFieldRange(fields[len(fields)-1], value) != nil {
				return true
			}
		}
	}
	return false
}

// apply sets in msg, the request message of the method a REST call
// calls (a new one, or vanguard's), the parameters of q that it has, as
// vanguard sets the parameters it takes after the body: a list's elements
// appended, a map's entries and a singular field replaced. A parameter
// held for another route's request (see [routeMethods.holds]) is set as
// msg has it, a field vanguard would set too. Its error names the first
// parameter that fails and why.
func (q heldQuery) apply(msg protoreflect.Message) error {
	md := msg.Descriptor()
	for _, p := range q {
		if p.mask != nil {
			if err := setMask(msg, p); err != nil {
				return err
			}
			continue
		}
		fields, key, kind := resolveQuery(md, p.name)
		if kind == queryUnknown {
			continue // no field of md: ignored, as vanguard ignores it
		}
		var err error
		switch kind {
		case queryRefused:
			err = refusal(fields)
		case queryMap:
			err = fmt.Errorf("a map is set one entry at a time, as %s[key]=value", p.name)
		case queryWKTField:
			for _, v := range p.values {
				if err = wktFieldRange(fields[len(fields)-1], v); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("invalid query parameter %q: %w", p.name, err)
		}
		fd := fields[len(fields)-1]
		leaf := msg
		for _, f := range fields[:len(fields)-1] {
			leaf = leaf.Mutable(f).Message()
		}
		switch kind {
		case queryMapKey:
			err = setMapEntry(leaf, fd, key, p.values)
		case queryList:
			list := leaf.Mutable(fd).List()
			for _, v := range p.values {
				e := list.NewElement()
				if err = wktValue(e.Message(), fd, v); err != nil {
					break
				}
				list.Append(e)
			}
		case queryWKT:
			v := leaf.NewField(fd)
			for _, s := range p.values {
				if err = wktValue(v.Message(), fd, s); err != nil {
					break
				}
			}
			if err == nil {
				leaf.Set(fd, v)
			}
		default: // queryPlain, queryWKTField in range
			for _, v := range p.values {
				if err = setPlain(leaf, fd, v); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("invalid query parameter %q: %w", p.name, err)
		}
	}
	return nil
}

// refusal says why vanguard refuses a parameter whose name resolves to
// fields and then to an element it cannot name (see [resolveQuery]): the
// last of fields is a list, a map or not a message, or the next element
// is empty. Its words are vanguard's, as [restClientError] writes them.
func refusal(fields []protoreflect.FieldDescriptor) error {
	if len(fields) == 0 {
		return errors.New("it names no field")
	}
	parent := fields[len(fields)-1]
	switch {
	case parent.IsList() || parent.IsMap():
		return fmt.Errorf("field %q of type %s should not be a list or map", parent.Name(), parent.ContainingMessage().FullName())
	case parent.Message() == nil:
		return fmt.Errorf("field %q of type %s should be a message but is instead %s", parent.Name(), parent.ContainingMessage().FullName(), parent.Kind())
	}
	return fmt.Errorf("an element after field %q names no field", parent.Name())
}

// replaces says whether q sets a singular field of md, which replaces the
// one vanguard's message may have (see [withHeld]): an empty value, the
// zero of its kind, must clear it, which an encoding merged with
// vanguard's cannot.
func (q heldQuery) replaces(md protoreflect.MessageDescriptor) bool {
	for _, p := range q {
		if p.mask != nil {
			return true
		}
		fields, _, kind := resolveQuery(md, p.name)
		switch kind {
		case queryWKT, queryWKTField:
			return true
		case queryPlain:
			if !fields[len(fields)-1].IsList() {
				return true
			}
		}
	}
	return false
}
