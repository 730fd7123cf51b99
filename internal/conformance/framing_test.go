package conformance_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/connectkit/connectkit/internal/conformance"
	conformancev1 "github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1"
)

func TestDelimitedRoundTrip(t *testing.T) {
	t.Parallel()
	want := &conformancev1.ServerCompatRequest{
		Protocol:            conformancev1.Protocol_PROTOCOL_GRPC,
		HttpVersion:         conformancev1.HTTPVersion_HTTP_VERSION_2,
		UseTls:              true,
		MessageReceiveLimit: 200 << 10,
		ServerCreds:         &conformancev1.TLSCreds{Cert: []byte("cert"), Key: []byte("key")},
	}
	var buf bytes.Buffer
	if err := conformance.WriteDelimited(&buf, want); err != nil {
		t.Fatal(err)
	}
	// Two messages back to back must come apart at the right byte.
	if err := conformance.WriteDelimited(&buf, &conformancev1.ServerCompatRequest{}); err != nil {
		t.Fatal(err)
	}
	wire := buf.Bytes()
	if size := binary.BigEndian.Uint32(wire); int(size) != proto.Size(want) {
		t.Fatalf("size prefix = %d, want %d (the message's size)", size, proto.Size(want))
	}
	var got, second conformancev1.ServerCompatRequest
	if err := conformance.ReadDelimited(&buf, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("read %v, want %v", &got, want)
	}
	if err := conformance.ReadDelimited(&buf, &second); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatalf("%d bytes left after reading both messages", buf.Len())
	}
}

func TestReadDelimitedErrors(t *testing.T) {
	t.Parallel()
	prefix := func(size uint32) []byte { return binary.BigEndian.AppendUint32(nil, size) }
	tests := []struct {
		name    string
		input   []byte
		wantIs  error  // when set, the error must wrap it
		wantMsg string // the error must contain it
	}{
		{name: "empty input", input: nil, wantIs: io.EOF, wantMsg: "size prefix"},
		{name: "short prefix", input: []byte{0, 0}, wantIs: io.ErrUnexpectedEOF, wantMsg: "size prefix"},
		{name: "short body", input: append(prefix(10), 1, 2, 3), wantIs: io.ErrUnexpectedEOF, wantMsg: "10 bytes"},
		{name: "missing body", input: prefix(10), wantIs: io.ErrUnexpectedEOF, wantMsg: "10 bytes"},
		{name: "prefix over limit", input: prefix(1 << 30), wantMsg: "over the"},
		{name: "not protobuf", input: append(prefix(2), 0xff, 0xff), wantMsg: "unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var req conformancev1.ServerCompatRequest
			err := conformance.ReadDelimited(bytes.NewReader(tc.input), &req)
			if err == nil {
				t.Fatal("ReadDelimited succeeded, want an error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q does not wrap %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), "ServerCompatRequest") {
				t.Errorf("error %q should name the message and contain %q", err, tc.wantMsg)
			}
		})
	}
}

func TestWriteDelimitedWriteError(t *testing.T) {
	t.Parallel()
	err := conformance.WriteDelimited(failingWriter{}, &conformancev1.ServerCompatResponse{Host: "127.0.0.1", Port: 1})
	if !errors.Is(err, errWrite) {
		t.Fatalf("error %v does not wrap the writer's error", err)
	}
}

var errWrite = errors.New("write failed")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }
