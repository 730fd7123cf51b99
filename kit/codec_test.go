package kit_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/connectkit/connectkit/kit"
)

// A message that does not decode is InvalidArgument whose message names
// its protobuf type, not its Go type, which would tell the caller the
// server's package names ("unmarshal into *pingv1.PingRequest", connect's
// own codecs' message), in every protocol and codec.
func TestUndecodableMessageNamesNoGoType(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	for _, tc := range []struct {
		name, contentType, body string
		message                 func(res *http.Response, body string) string
	}{
		{"connect+json", "application/json", `{"number":`, connectMessage},
		{"connect+json utf-8", "application/json; charset=utf-8", `{"number":"x"}`, connectMessage},
		{"connect+proto", "application/proto", "\x08", connectMessage},
		{"grpc", "application/grpc", "\x00\x00\x00\x00\x01\x08", grpcMessage},
		{"grpc-web", "application/grpc-web+proto", "\x00\x00\x00\x00\x01\x08", grpcWebMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodPost, s.URL+pingPath, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.contentType)
			req.Header.Set("Te", "trailers")
			res, err := s.HTTP2Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, res.Body)
			_ = res.Body.Close()
			msg := tc.message(res, body)
			if !strings.Contains(msg, "unmarshal connectkit.ping.v1.PingRequest: ") || strings.Contains(msg, "pingv1") {
				t.Errorf("message %q, want it to name connectkit.ping.v1.PingRequest and no Go type", msg)
			}
		})
	}
}

// connectMessage returns the message of a Connect error.
func connectMessage(_ *http.Response, body string) string { return body }

// grpcMessage returns the Grpc-Message of a gRPC response.
func grpcMessage(res *http.Response, _ string) string {
	return res.Header.Get("Grpc-Message") + res.Trailer.Get("Grpc-Message")
}

// grpcWebMessage returns the gRPC-Web response's trailers as sent.
func grpcWebMessage(res *http.Response, body string) string {
	return res.Header.Get("Grpc-Message") + body
}
