package kit_test

import (
	"fmt"
	"net/http"
	"path"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// On a server with REST routes, a POST of JSON or protobuf to a path no
// route matches is taken for a unary Connect call only where a procedure
// could be, "/<package.Service>/<Method>": an unknown procedure there is
// Connect's Unimplemented, in every protocol and from curl, as before. A
// path that cannot be a procedure (more or fewer segments, a service
// without a package, a ":verb") gets the REST 404, a google.rpc.Status
// naming the path, where it got Connect's error body, whose code is a
// string, unlike every other REST error's.
func TestRESTUnknownPostPaths(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	procedures := []string{"/connectkit.ping.v1.PingService/Nope", "/other.v1.Service/Ping"}
	for _, procedure := range procedures {
		for _, p := range s.Protocols() {
			client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](p.Client, s.URL+procedure, p.Options...)
			_, err := client.CallUnary(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
			if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), procedure) {
				t.Errorf("%s %s: err = %v, want unimplemented naming it", p.Name, procedure, err)
			}
		}
		conn, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		err = conn.Invoke(t.Context(), procedure, &pingv1.PingRequest{}, &pingv1.PingResponse{})
		if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), procedure) {
			t.Errorf("grpc-go %s: err = %v, want Unimplemented naming it", procedure, err)
		}
		_ = conn.Close()
	}
	for _, tc := range []struct {
		path, contentType string
		connect           bool // Connect's unimplemented, not the REST 404
	}{
		{path: "/other.v1.Service/Ping", contentType: "application/json", connect: true},
		{path: "/other.v1.Service/Ping", contentType: "application/proto", connect: true},
		{path: "//other.v1.Service/Ping", contentType: "application/json", connect: true}, // the ServeMux's 307, followed
		{path: "/v1/nothing", contentType: "application/json"},
		{path: "/v1/nothing", contentType: "application/proto"},
		{path: "/v1/nothing/more", contentType: "application/json"},
		{path: "/nothing", contentType: "application/json"},
		{path: "/v1/ping:nothing", contentType: "application/json"},
		{path: "/other.v1.Service/Ping:nothing", contentType: "application/json"},
		{path: "/other.v1.Service/Ping/more", contentType: "application/json"},
		{path: "/Service/Ping", contentType: "application/json"},
		{path: "/other.v1.Service/", contentType: "application/json"},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, http.MethodPost, s.URL+tc.path, "{}", http.Header{"Content-Type": {tc.contentType}})
			want := fmt.Sprintf(`{"code":5,"message":"no route matches \"POST\" \"%s\"","details":[]}`, tc.path)
			if tc.connect {
				want = fmt.Sprintf(`{"code":"unimplemented","message":"unknown procedure %s"}`, path.Clean(tc.path))
			}
			if resp.StatusCode != http.StatusNotFound || body != want || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("POST %s of %s over %s = %d %s %s, want 404 %s", tc.path, tc.contentType, resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"), body, want)
			}
		}
	}
}
