package interceptors_test

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestGRPCGoClient calls the chain with google.golang.org/grpc, which knows
// nothing of connect: the request id comes back in the headers, the
// traceparent it sends is continued, and the server's lines and series are
// those of any gRPC call.
func TestGRPCGoClient(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, serverConfig{})
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	ctx := metadata.AppendToOutgoingContext(t.Context(),
		"traceparent", "00-"+traceID+"-b7ad6b7169203331-01", "x-request-id", "grpc-go-1")

	var header metadata.MD
	resp := &pingv1.PingResponse{}
	if err := conn.Invoke(ctx, pingv1connect.PingServicePingProcedure, &pingv1.PingRequest{Number: 3}, resp, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if resp.GetNumber() != 3 || header.Get("x-request-id")[0] != "grpc-go-1" {
		t.Errorf("response %v, header %v", resp, header)
	}
	err = conn.Invoke(ctx, pingv1connect.PingServicePingProcedure, &pingv1.PingRequest{Number: -1}, resp)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("invalid request: %v, want InvalidArgument", err)
	}

	desc := &grpc.StreamDesc{StreamName: "CountUp", ServerStreams: true}
	stream, err := conn.NewStream(ctx, desc, pingv1connect.PingServiceCountUpProcedure)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&pingv1.CountUpRequest{Number: 2}); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		err := stream.RecvMsg(&pingv1.CountUpResponse{})
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("received %d numbers, want 2", n)
	}

	for _, want := range []map[string]any{
		{"procedure": pingv1connect.PingServicePingProcedure, "code": "ok"},
		{"procedure": pingv1connect.PingServicePingProcedure, "code": "invalid_argument"},
		{"procedure": pingv1connect.PingServiceCountUpProcedure, "code": "ok", "sent": 2.0},
	} {
		want["protocol"], want["request_id"], want["trace_id"] = "grpc", "grpc-go-1", traceID
		s.server.logs.waitLine(t, want)
	}
	if got := metricValue(t, s.server.reg, "grpc_server_handled_total", series("server_stream", "CountUp", "grpc_code", "OK")); got != 1 {
		t.Errorf("grpc_server_handled_total for CountUp = %v, want 1", got)
	}
}

// TestPlainHTTP calls the chain with net/http and JSON, as curl would: a
// Connect POST and a Connect GET (Ping has no side effects).
func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, serverConfig{})
	client := httpClient(t, true)
	post, err := client.Post(s.URL+pingv1connect.PingServicePingProcedure, "application/json", strings.NewReader(`{"number": 5}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(post.Body)
	_ = post.Body.Close()
	if post.StatusCode != http.StatusOK || !strings.Contains(string(body), `"number":"5"`) {
		t.Fatalf("POST: %s %s", post.Status, body)
	}
	get, err := client.Get(s.URL + pingv1connect.PingServicePingProcedure + "?encoding=json&message=" + url.QueryEscape(`{"number":-1}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = get.Body.Close()
	if get.StatusCode != http.StatusBadRequest {
		t.Errorf("GET of an invalid request: %s, want 400", get.Status)
	}
	for _, resp := range []*http.Response{post, get} {
		id := resp.Header.Get("X-Request-Id")
		if !uuidV4.MatchString(id) {
			t.Errorf("X-Request-Id %q, want a UUID", id)
		}
		s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "protocol": "connect", "http": "HTTP/1.1", "request_id": id})
	}
}
