package kit_test

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// watchService is connectkit.fuzz.v1.Watches: Watch, a server stream
// routed `post: "/v1/watches/{name}"` without a body, beside Put, unary,
// `post: "/v1/watches" body: "*"`. Registered once.
var watchService = sync.OnceValues(func() (protoreflect.ServiceDescriptor, error) {
	watch, put := &descriptorpb.MethodOptions{}, &descriptorpb.MethodOptions{}
	proto.SetExtension(watch, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/watches/{name}"}})
	proto.SetExtension(put, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/watches"}, Body: "*"})
	return registerService(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("connectkit/fuzz/v1/watches.proto"),
		Package:    proto.String("connectkit.fuzz.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/api/annotations.proto", "google/api/httpbody.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("WatchRequest"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("name"), JsonName: proto.String("name"), Number: proto.Int32(1),
				Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}},
		}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Watches"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("Watch"), InputType: proto.String(".connectkit.fuzz.v1.WatchRequest"),
				OutputType: proto.String(".google.api.HttpBody"), ServerStreaming: proto.Bool(true), Options: watch,
			}, {
				Name: proto.String("Put"), InputType: proto.String(".connectkit.fuzz.v1.WatchRequest"),
				OutputType: proto.String(".connectkit.fuzz.v1.WatchRequest"), Options: put,
			}},
		}},
	})
})

// A body sent to a server stream's route that takes none, beside a route
// of its HTTP method that takes one, is ignored as a unary method's is
// (TestRESTBodyOfARouteThatTakesNoneIsIgnored): vanguard refused it only
// once the chain had begun the call, which answered 500 Unknown in
// application/connect+proto and logged an rpc line at error, "request
// should have no body".
func TestRESTBodyOfAStreamRouteThatTakesNone(t *testing.T) {
	t.Parallel()
	sd, err := watchService()
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			var runs atomic.Int32
			s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
				md := sd.Methods().Get(0)
				path := "/" + string(sd.FullName()) + "/Watch"
				mux := http.NewServeMux()
				mux.Handle(path, connect.NewServerStreamHandler(path,
					func(_ context.Context, req *connect.Request[dynamicpb.Message], stream *connect.ServerStream[httpbody.HttpBody]) error {
						runs.Add(1)
						name := req.Msg.Get(md.Input().Fields().ByName("name")).String()
						return stream.Send(&httpbody.HttpBody{ContentType: "text/plain", Data: []byte("watching " + name)})
					}, append([]connect.HandlerOption{
						connect.WithSchema(md),
						connect.WithRequestInitializer(func(_ connect.Spec, msg any) error {
							*msg.(*dynamicpb.Message) = *dynamicpb.NewMessage(md.Input())
							return nil
						}),
					}, srv.HandlerOptions()...)...))
				srv.Mount("/"+string(sd.FullName())+"/", mux)
			}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			client := s.HTTP1Client()
			if proto == "h2c" {
				client = s.HTTP2Client()
			}
			bodies := []string{"", `{}`, `{"name":"b"}`, `{"name":`}
			for _, body := range bodies {
				resp, got := restCall(t, client, http.MethodPost, s.URL+"/v1/watches/a", body, http.Header{"X-Request-Id": {"watch-1"}})
				if resp.StatusCode != http.StatusOK || got != "watching a" || resp.Header.Get("Content-Type") != "text/plain" {
					t.Errorf("POST /v1/watches/a with body %q = %d %q (%s), want 200 \"watching a\" text/plain", body, resp.StatusCode, got, resp.Header.Get("Content-Type"))
				}
				if ids := resp.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] != "watch-1" {
					t.Errorf("POST /v1/watches/a with body %q: X-Request-Id %q, want the client's once", body, ids)
				}
			}
			if n := runs.Load(); n != int32(len(bodies)) {
				t.Errorf("Watch ran %d times, want %d", n, len(bodies))
			}
			lines := logLines(t, &logs, "rpc")
			for _, line := range lines {
				if line["code"] != "ok" {
					t.Errorf("rpc line %v, want ok", line)
				}
			}
			if len(lines) != len(bodies) {
				t.Errorf("%d rpc lines, want %d", len(lines), len(bodies))
			}
			if n := counterValue(t, s.Registry(), "kit_rejected_calls_total", map[string]string{}); n != 0 {
				t.Errorf("kit_rejected_calls_total = %v, want 0", n)
			}
		})
	}
}
