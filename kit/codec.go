package kit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The codecs of kit's handlers are connect's own, but for the error of a
// message that does not decode, which the caller gets: connect's names the
// message's Go type ("unmarshal into *examplev1.CreateProfileRequest:
// proto: …"), and so the server's package names, where these name the
// message's protobuf type, which the caller knows ("unmarshal
// example.v1.CreateProfileRequest: proto: …"). Encoding is connect's,
// call for call.
var handlerCodecs = []connect.HandlerOption{
	connect.WithCodec(protoCodec{}),
	connect.WithCodec(jsonCodec{name: "json"}),
	connect.WithCodec(jsonCodec{name: "json; charset=utf-8"}),
}

// protoCodec is connect's binary protobuf codec, whose errors name no Go
// type (see [handlerCodecs]).
type protoCodec struct{}

// Name implements connect.Codec.
func (protoCodec) Name() string { return "proto" }

// IsBinary says that the codec is binary.
func (protoCodec) IsBinary() bool { return true }

// Marshal implements connect.Codec.
func (protoCodec) Marshal(message any) ([]byte, error) {
	m, err := protoMessage(message)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(m)
}

// MarshalAppend appends message to dst, as connect's codec does.
func (protoCodec) MarshalAppend(dst []byte, message any) ([]byte, error) {
	m, err := protoMessage(message)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

// MarshalStable implements connect's stableCodec (Connect GET).
func (protoCodec) MarshalStable(message any) ([]byte, error) {
	m, err := protoMessage(message)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Unmarshal implements connect.Codec.
func (protoCodec) Unmarshal(data []byte, message any) error {
	m, err := protoMessage(message)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return unmarshalError(m, err)
	}
	return nil
}

// jsonCodec is connect's protojson codec of the given name, whose errors
// name no Go type (see [handlerCodecs]).
type jsonCodec struct{ name string }

// Name implements connect.Codec.
func (c jsonCodec) Name() string { return c.name }

// IsBinary says that the codec is not binary.
func (jsonCodec) IsBinary() bool { return false }

// Marshal implements connect.Codec.
func (jsonCodec) Marshal(message any) ([]byte, error) {
	m, err := protoMessage(message)
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{}.Marshal(m)
}

// MarshalAppend appends message to dst, as connect's codec does.
func (jsonCodec) MarshalAppend(dst []byte, message any) ([]byte, error) {
	m, err := protoMessage(message)
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, m)
}

// MarshalStable implements connect's stableCodec (Connect GET).
func (c jsonCodec) MarshalStable(message any) ([]byte, error) {
	b, err := c.Marshal(message)
	if err != nil {
		return nil, err
	}
	// protojson's spacing varies from build to build: compact it, as
	// connect does.
	compact := bytes.NewBuffer(b[:0])
	if err := json.Compact(compact, b); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

// Unmarshal implements connect.Codec.
func (jsonCodec) Unmarshal(data []byte, message any) error {
	m, err := protoMessage(message)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	// Unknown fields are discarded, as connect does, so that clients and
	// servers need not share a version of the schema.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		return unmarshalError(m, err)
	}
	return nil
}

// protoMessage returns message as a proto.Message, or the error connect
// gives for one that is not (which names its Go type: the server's code
// passed it, not a caller).
func protoMessage(message any) (proto.Message, error) {
	m, ok := message.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T doesn't implement proto.Message", message)
	}
	return m, nil
}

// unmarshalError is the error of m that did not decode, naming its
// protobuf type.
func unmarshalError(m proto.Message, err error) error {
	return fmt.Errorf("unmarshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
}
