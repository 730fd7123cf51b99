package kit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// This file reads the values of the query parameters that kit sets or
// checks in vanguard's place (see restquery.go). It writes each value as
// the JSON that vanguard makes of a singular one (see [valueJSON]) and has
// protojson read it, as it reads a body, so that kit reads a value as
// vanguard reads it where vanguard reads it right; vanguard's own parser
// is unexported.

// vanguardReads says whether vanguard reads value, a query parameter of
// fd, a singular field of a well-known type: whether protojson reads the
// JSON vanguard makes of it (see [valueJSON]); an empty value vanguard
// leaves empty, which protojson never reads, and a Struct, Value or
// ListValue it never reads (see [jsonWKT]).
func vanguardReads(fd protoreflect.FieldDescriptor, value string) bool {
	return value != "" && !jsonWKT(fd) && utf8.ValidString(value) && protojson.Unmarshal(valueJSON(fd, value), dynamicpb.NewMessage(fd.Message()).Interface()) == nil
}

// wktValue sets m, a message of fd's well-known type, from value, a query
// parameter's, read as vanguard reads a singular one (see [valueJSON]), or
// says why it cannot. A FieldMask's paths may also be the fields' proto
// names (?update_mask=display_name,email), which grpc-gateway takes as
// they are, where protojson takes lowerCamelCase JSON names alone.
func wktValue(m protoreflect.Message, fd protoreflect.FieldDescriptor, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%q is not UTF-8", value)
	}
	if protojson.Unmarshal(valueJSON(fd, value), m.Interface()) == nil {
		return nil
	}
	if fd.Message().Name() == "FieldMask" && protoNamePaths(value) {
		paths := m.Mutable(m.Descriptor().Fields().ByName("paths")).List()
		for p := range strings.SplitSeq(value, ",") {
			paths.Append(protoreflect.ValueOfString(p))
		}
		return nil
	}
	return fmt.Errorf("%q is not a %s", value, typeName(fd))
}

// protoNamePaths says whether value is field paths of proto names, in
// lower case, separated by commas.
func protoNamePaths(value string) bool {
	for p := range strings.SplitSeq(value, ",") {
		if !protoreflect.FullName(p).IsValid() || strings.ToLower(p) != p {
			return false
		}
	}
	return true
}

// setPlain sets fd of parent, a field that vanguard sets from a query
// parameter itself (a scalar, an enum, a list of them, a field of a
// Timestamp or Duration), from value, read as vanguard reads it (see
// [jsonScalar] and [valueJSON]): a list's element appended, a singular
// field replaced, as vanguard's setParameter does. It says why value is
// not one, or why fd takes none (a message that is no well-known type, as
// vanguard refuses it).
func setPlain(parent protoreflect.Message, fd protoreflect.FieldDescriptor, value string) error {
	if fd.Message() != nil && !scalarWKT(fd) {
		return fmt.Errorf("field %q is a %s, set one field at a time, as %s.field=value", fd.Name(), typeName(fd), fd.Name())
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("%q is not UTF-8", value)
	}
	if v, ok, err := jsonScalar(fd, value); ok {
		if err != nil {
			return fmt.Errorf("%q is not a %s", value, typeName(fd))
		}
		if fd.IsList() {
			parent.Mutable(fd).List().Append(v)
		} else {
			parent.Set(fd, v)
		}
		return nil
	}
	v := valueJSON(fd, value)
	if fd.IsList() {
		v = append(append([]byte{'['}, v...), ']')
	}
	name, _ := json.Marshal(fd.JSONName())
	doc := append(append(append([]byte{'{'}, name...), ':'), append(v, '}')...)
	m := parent.Type().New()
	if err := (protojson.UnmarshalOptions{AllowPartial: true}).Unmarshal(doc, m.Interface()); err != nil {
		return fmt.Errorf("%q is not a %s", value, typeName(fd))
	}
	if fd.IsList() {
		parent.Mutable(fd).List().Append(m.Get(fd).List().Get(0))
		return nil
	}
	parent.Set(fd, m.Get(fd))
	return nil
}

// jsonScalar reads value, a query parameter of fd, a bool, an integer, a
// float or an enum, as vanguard v0.4.0 reads one (params.go,
// unmarshalFieldValue): encoding/json's reading of the Go bool, int32,
// int64, uint32, uint64, float32 or float64, which takes a JSON number
// alone (?size=1e2 and ?size=1.0 are no int64, as grpc-gateway's
// strconv.ParseInt refuses them too; protojson took them) and leaves
// "null" the zero; NaN, Infinity and -Infinity for a float; an enum's
// number or name. ok is false for the other kinds, which protojson reads
// as vanguard does (see [valueJSON]). Read alike, a parameter that kit
// sets on one route means what vanguard makes of it on another.
func jsonScalar(fd protoreflect.FieldDescriptor, value string) (v protoreflect.Value, ok bool, err error) {
	raw := []byte(value)
	switch fd.Kind() {
	case protoreflect.BoolKind:
		var x bool
		err = json.Unmarshal(raw, &x)
		v = protoreflect.ValueOfBool(x)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		var x int32
		err = json.Unmarshal(raw, &x)
		v = protoreflect.ValueOfInt32(x)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		var x int64
		err = json.Unmarshal(raw, &x)
		v = protoreflect.ValueOfInt64(x)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		var x uint32
		err = json.Unmarshal(raw, &x)
		v = protoreflect.ValueOfUint32(x)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		var x uint64
		err = json.Unmarshal(raw, &x)
		v = protoreflect.ValueOfUint64(x)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		var x float64
		switch value {
		case "NaN":
			x = math.NaN()
		case "Infinity":
			x = math.Inf(1)
		case "-Infinity":
			x = math.Inf(-1)
		default:
			if fd.Kind() == protoreflect.FloatKind {
				var f float32 // out of float32's range is an error
				err = json.Unmarshal(raw, &f)
				x = float64(f)
			} else {
				err = json.Unmarshal(raw, &x)
			}
		}
		v = protoreflect.ValueOfFloat64(x)
		if fd.Kind() == protoreflect.FloatKind {
			v = protoreflect.ValueOfFloat32(float32(x))
		}
	case protoreflect.EnumKind:
		var x int32
		if json.Unmarshal(raw, &x) == nil {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(x)), true, nil
		}
		ev := fd.Enum().Values().ByName(protoreflect.Name(value))
		if ev == nil {
			return v, true, fmt.Errorf("unknown enum value %q", value)
		}
		v = protoreflect.ValueOfEnum(ev.Number())
	default:
		return v, false, nil
	}
	return v, true, err
}

// setMapEntry sets the entry key of the map fd of parent to values, which
// must be one value.
func setMapEntry(parent protoreflect.Message, fd protoreflect.FieldDescriptor, key string, values []string) error {
	switch {
	case !fd.IsMap():
		return fmt.Errorf("field %q is not a map", fd.Name())
	case len(values) != 1:
		return fmt.Errorf("key %q is given %d times", key, len(values))
	}
	if err := mapKey(fd.MapKey(), key); err != nil {
		return err
	}
	k, _ := json.Marshal(key) // UTF-8 (see mapKey)
	return setJSON(parent, fd, append(append(append([]byte{'{'}, k...), ':'), append(valueJSON(fd.MapValue(), values[0]), '}')...), values[0])
}

// mapKey says why key is not a key of the kind of fd, if it is not.
func mapKey(fd protoreflect.FieldDescriptor, key string) error {
	var err error
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(key) {
			err = errors.New("not UTF-8")
		}
	case protoreflect.BoolKind:
		if key != "true" && key != "false" {
			err = errors.New("not true or false")
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		_, err = strconv.ParseUint(key, 10, 32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		_, err = strconv.ParseUint(key, 10, 64)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		_, err = strconv.ParseInt(key, 10, 32)
	default:
		_, err = strconv.ParseInt(key, 10, 64)
	}
	if err != nil {
		return fmt.Errorf("key %q is not a %s", key, fd.Kind())
	}
	return nil
}

// setJSON sets the map fd of parent from v, the JSON of an entry, which
// protojson reads as it reads a body, or returns why value, the entry's,
// is not one.
func setJSON(parent protoreflect.Message, fd protoreflect.FieldDescriptor, v []byte, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%q is not UTF-8", value)
	}
	name, _ := json.Marshal(fd.JSONName())
	doc := append(append(append([]byte{'{'}, name...), ':'), append(v, '}')...)
	m := parent.Type().New()
	if err := protojson.Unmarshal(doc, m.Interface()); err != nil {
		return fmt.Errorf("%q is not a %s", value, typeName(fd.MapValue()))
	}
	proto.Merge(parent.Interface(), m.Interface())
	return nil
}

// valueJSON returns the JSON of value, a query parameter's, for fd, as
// vanguard reads a singular field: a well-known type whose JSON is a
// string gets it quoted unless it is (vanguard's quote()), a number or
// bool as it is; for the kinds vanguard reads itself, JSON that protojson
// reads in the same way.
func valueJSON(fd protoreflect.FieldDescriptor, value string) []byte {
	raw := []byte(value)
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if value == "true" || value == "false" {
			return raw
		}
	case protoreflect.EnumKind:
		if _, err := strconv.ParseInt(value, 10, 32); err == nil {
			return raw
		}
	case protoreflect.MessageKind:
		switch fd.Message().Name() {
		case "Timestamp", "Duration", "BytesValue", "StringValue", "FieldMask":
			if len(raw) > 1 && raw[0] == '"' && json.Valid(raw) {
				return raw
			}
		case "Struct", "Value", "ListValue":
			return raw // its JSON, as grpc-gateway reads it (see jsonWKT)
		case "DoubleValue", "FloatValue":
			if value != "NaN" && value != "Infinity" && value != "-Infinity" && json.Valid(raw) {
				return raw
			}
		default:
			if scalarWKT(fd) && json.Valid(raw) {
				return raw
			}
		}
	}
	quoted, _ := json.Marshal(value) // UTF-8 (see setJSON)
	return quoted
}

// typeName names the type of fd's values for an error message.
func typeName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		return string(fd.Enum().FullName())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch md := fd.Message(); {
		case !wellKnown(md):
			return string(md.FullName())
		case md.Name() == "Timestamp":
			return "google.protobuf.Timestamp (RFC 3339, such as 2020-01-01T00:00:00Z)"
		case md.Name() == "Duration":
			return "google.protobuf.Duration (seconds with an s suffix, such as 1.5s)"
		case md.Name() == "FieldMask":
			return "google.protobuf.FieldMask (field paths separated by commas, of lowerCamelCase JSON names or proto names)"
		case md.Name() == "Struct":
			return `google.protobuf.Struct (a JSON object, such as {"kind":"book"})`
		case md.Name() == "Value":
			return `google.protobuf.Value (JSON, such as "text", 1, true, null, [1] or {"k":1})`
		case md.Name() == "ListValue":
			return `google.protobuf.ListValue (a JSON array, such as [1,"a"])`
		default:
			return string(md.FullName())
		}
	}
	return fd.Kind().String()
}

// wktFieldRange says why value, a query parameter of fd, a field of a
// Timestamp or Duration, makes it no valid one (as protojson refuses it),
// if it does; a value that is no integer is vanguard's to refuse.
func wktFieldRange(fd protoreflect.FieldDescriptor, value string) error {
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return nil
	}
	var lo, hi int64
	switch {
	case fd.ContainingMessage().Name() == "Timestamp" && fd.Name() == "seconds":
		lo, hi = -62135596800, 253402300799 // 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z
	case fd.ContainingMessage().Name() == "Timestamp" && fd.Name() == "nanos":
		lo, hi = 0, 999_999_999
	case fd.Name() == "seconds": // Duration's: ±10000 years
		lo, hi = -315_576_000_000, 315_576_000_000
	default: // Duration's nanos
		lo, hi = -999_999_999, 999_999_999
	}
	if n < lo || n > hi {
		return fmt.Errorf("%d is out of range for the %s of a %s (%d to %d)", n, fd.Name(), fd.ContainingMessage().FullName(), lo, hi)
	}
	return nil
}
