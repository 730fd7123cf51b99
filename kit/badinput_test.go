package kit_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

const pingPath = "/connectkit.ping.v1.PingService/Ping"

func readAll(tb testing.TB, r io.Reader) string {
	tb.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// post sends body to path with the given headers and returns the status and
// the response body.
func post(tb testing.TB, client *http.Client, url string, body io.Reader, header ...string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	return res.StatusCode, readAll(tb, res.Body)
}

// connectCode returns the code of a Connect protocol JSON error body.
func connectCode(tb testing.TB, body string) string {
	tb.Helper()
	var e struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		tb.Fatalf("not a Connect error body: %q", body)
	}
	return e.Code
}

// gzipBomb returns a small gzip stream of a PingRequest whose text field
// decompresses to size MiB: one gzip member for the field's header, then the
// same compressed MiB of "a" again and again (gzip readers read on across
// members).
func gzipBomb(tb testing.TB, size int) []byte {
	tb.Helper()
	member := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		if err := zw.Close(); err != nil {
			tb.Fatal(err)
		}
		return buf.Bytes()
	}
	bomb := member(binary.AppendUvarint([]byte{0x12}, uint64(size)<<20)) // field 2 (text), length-delimited
	mib := member(bytes.Repeat([]byte("a"), 1<<20))
	for range size {
		bomb = append(bomb, mib...)
	}
	return bomb
}

func TestBadInputGetsTheRightCodeAndTheServerKeepsServing(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{MaxRequestBytes: 64 << 10}, nil)
	url := srv.URL + pingPath
	bomb := gzipBomb(t, 256) // 256 MiB from about 256 KiB

	t.Run("malformed JSON", func(t *testing.T) {
		t.Parallel()
		code, body := post(t, srv.HTTP1Client(), url, strings.NewReader(`{"number": `), "Content-Type", "application/json")
		if code != http.StatusBadRequest || connectCode(t, body) != "invalid_argument" {
			t.Errorf("got %d %s, want 400 invalid_argument", code, body)
		}
	})
	t.Run("wrong content type", func(t *testing.T) {
		t.Parallel()
		code, body := post(t, srv.HTTP1Client(), url, strings.NewReader(`{}`), "Content-Type", "text/plain")
		if code != http.StatusUnsupportedMediaType {
			t.Errorf("got %d %s, want 415", code, body)
		}
	})
	t.Run("unknown method", func(t *testing.T) {
		t.Parallel()
		code, _ := post(t, srv.HTTP1Client(), srv.URL+"/connectkit.ping.v1.PingService/Nope", strings.NewReader(`{}`), "Content-Type", "application/json")
		if code != http.StatusNotFound {
			t.Errorf("got %d, want 404", code)
		}
		err := grpcConn(t, srv.Addr().String()).Invoke(t.Context(), "/connectkit.ping.v1.PingService/Nope", &pingv1.PingRequest{}, &pingv1.PingResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("gRPC: got %v, want Unimplemented", err)
		}
	})
	t.Run("message over the size limit", func(t *testing.T) {
		t.Parallel()
		big := &pingv1.PingRequest{Text: strings.Repeat("x", 100<<10)}
		for _, p := range srv.Protocols() {
			_, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(big))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("%s: got %v, want ResourceExhausted", p.Name, err)
			}
		}
	})
	t.Run("gzip bomb over Connect", func(t *testing.T) {
		t.Parallel()
		code, body := post(t, srv.HTTP1Client(), url, bytes.NewReader(bomb),
			"Content-Type", "application/proto", "Content-Encoding", "gzip")
		if connectCode(t, body) != "resource_exhausted" {
			t.Errorf("got %d %s, want resource_exhausted", code, body)
		}
	})
	t.Run("gzip bomb over gRPC", func(t *testing.T) {
		t.Parallel()
		frame := binary.BigEndian.AppendUint32([]byte{1}, uint32(len(bomb)))
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(append(frame, bomb...)))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Grpc-Encoding", "gzip")
		req.Header.Set("Te", "trailers")
		res, err := srv.HTTP2Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if got := grpcTrailers(res).Get("Grpc-Status"); got != "8" { // RESOURCE_EXHAUSTED
			t.Errorf("grpc-status %q (%s), want 8", got, grpcTrailers(res).Get("Grpc-Message"))
		}
	})
	t.Run("protovalidate violation", func(t *testing.T) {
		t.Parallel()
		invalid := &pingv1.PingRequest{Number: -1}
		for _, p := range srv.Protocols() {
			_, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(invalid))
			if violation := violationField(t, err); violation != "number" {
				t.Errorf("%s: got %v with violation on %q, want InvalidArgument on number", p.Name, err, violation)
			}
		}
		err := grpcConn(t, srv.Addr().String()).Invoke(t.Context(), pingPath, invalid, &pingv1.PingResponse{})
		st := status.Convert(err)
		var violations *validate.Violations
		var badRequest *errdetails.BadRequest
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *validate.Violations:
				violations = d
			case *errdetails.BadRequest:
				badRequest = d
			}
		}
		if st.Code() != codes.InvalidArgument || violations.GetViolations()[0].GetField().GetElements()[0].GetFieldName() != "number" {
			t.Errorf("gRPC: got %v with details %v, want InvalidArgument with a violation on number", err, st.Details())
		}
		// Also as a standard google.rpc.BadRequest, for tools without the protovalidate protos.
		if badRequest.GetFieldViolations()[0].GetField() != "number" {
			t.Errorf("gRPC: BadRequest detail = %v, want a violation on number", badRequest)
		}
		code, body := post(t, srv.HTTP1Client(), url, strings.NewReader(`{"number": -1}`), "Content-Type", "application/json")
		if code != http.StatusBadRequest || !strings.Contains(body, `"type":"buf.validate.Violations"`) || !strings.Contains(body, `"fieldName":"number"`) {
			t.Errorf("JSON: got %d %s, want 400 with buf.validate.Violations details", code, body)
		}
	})

	// The server is still serving after all of that.
	t.Cleanup(func() {
		res, err := newPingClient(srv, srv.HTTP2Client()).Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
		if err != nil || res.Msg.GetNumber() != 1 {
			t.Errorf("after bad input, Ping = %v, %v", res, err)
		}
	})
}

// violationField returns the field of the first protovalidate violation in
// err's details, failing unless err is InvalidArgument.
func violationField(tb testing.TB, err error) string {
	tb.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		return ""
	}
	for _, d := range ce.Details() {
		msg, derr := d.Value()
		if v, ok := msg.(*validate.Violations); derr == nil && ok && len(v.GetViolations()) > 0 {
			return v.GetViolations()[0].GetField().GetElements()[0].GetFieldName()
		}
	}
	return ""
}

func grpcConn(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}
