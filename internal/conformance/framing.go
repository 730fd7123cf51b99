package conformance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/proto"
)

// maxFramedMessage bounds the size prefix ReadDelimited accepts, so that a
// corrupt prefix fails clearly instead of allocating gigabytes. The runner's
// ServerCompatRequest is a few kilobytes (two PEM certificates and a key).
const maxFramedMessage = 16 << 20

// ReadDelimited reads one size-delimited message from r into msg: a 4-byte
// big-endian length, then that many bytes of binary protobuf. This is how the
// conformance runner sends ServerCompatRequest on the server's stdin.
func ReadDelimited(r io.Reader, msg proto.Message) error {
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return fmt.Errorf("failed to read the size prefix of %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	size := binary.BigEndian.Uint32(prefix[:])
	if size > maxFramedMessage {
		return fmt.Errorf("size prefix of %s is %d bytes, over the %d-byte limit", msg.ProtoReflect().Descriptor().FullName(), size, maxFramedMessage)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("failed to read the %d bytes of %s: %w", size, msg.ProtoReflect().Descriptor().FullName(), err)
	}
	if err := proto.Unmarshal(data, msg); err != nil {
		return fmt.Errorf("failed to unmarshal %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// WriteDelimited writes msg to w in the framing ReadDelimited reads, in a
// single Write call. This is how the server reports ServerCompatResponse on
// its stdout.
func WriteDelimited(w io.Writer, msg proto.Message) error {
	data, err := proto.Marshal(msg)
	if err != nil {
		return fmt.Errorf("failed to marshal %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	if uint64(len(data)) > math.MaxUint32 {
		return fmt.Errorf("%s is %d bytes, too large to frame", msg.ProtoReflect().Descriptor().FullName(), len(data))
	}
	framed := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(data)), uint32(len(data)))
	if _, err := w.Write(append(framed, data...)); err != nil {
		return fmt.Errorf("failed to write %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}
