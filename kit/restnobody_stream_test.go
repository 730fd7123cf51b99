package kit_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
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
				mountStream(srv, sd, md, func(req *dynamicpb.Message) string {
					runs.Add(1)
					return "watching " + req.Get(md.Input().Fields().ByName("name")).String()
				})
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

// tailService is connectkit.fuzz.v1.Tails: Tail, a server stream routed
// `post: "/v1/tails" body: "*"`, beside Poke, unary, `post:
// "/v1/tails/{name}:poke"` without a body, so that a POST's body may
// be refused and the call served again (see [watchService]). Registered
// once.
var tailService = sync.OnceValues(func() (protoreflect.ServiceDescriptor, error) {
	tail, poke := &descriptorpb.MethodOptions{}, &descriptorpb.MethodOptions{}
	proto.SetExtension(tail, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/tails"}, Body: "*"})
	proto.SetExtension(poke, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/tails/{name}:poke"}})
	str := func(name string, n int32) *descriptorpb.FieldDescriptorProto {
		return fieldProto(name, n, descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL, "")
	}
	return registerService(&descriptorpb.FileDescriptorProto{
		Name:        proto.String("connectkit/fuzz/v1/tails.proto"),
		Package:     proto.String("connectkit.fuzz.v1"),
		Syntax:      proto.String("proto3"),
		Dependency:  []string{"google/api/annotations.proto", "google/api/httpbody.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("TailRequest"), Field: []*descriptorpb.FieldDescriptorProto{str("name", 1), str("data", 2)}}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Tails"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("Tail"), InputType: proto.String(".connectkit.fuzz.v1.TailRequest"),
				OutputType: proto.String(".google.api.HttpBody"), ServerStreaming: proto.Bool(true), Options: tail,
			}, {
				Name: proto.String("Poke"), InputType: proto.String(".connectkit.fuzz.v1.TailRequest"),
				OutputType: proto.String(".connectkit.fuzz.v1.TailRequest"), Options: poke,
			}},
		}},
	})
})

// mountStream mounts on srv the server stream md of sd, whose one
// message is the text/plain google.api.HttpBody that answer makes of its
// request.
func mountStream(srv *kit.Server, sd protoreflect.ServiceDescriptor, md protoreflect.MethodDescriptor, answer func(*dynamicpb.Message) string) {
	path := "/" + string(sd.FullName()) + "/" + string(md.Name())
	mux := http.NewServeMux()
	mux.Handle(path, connect.NewServerStreamHandler(path,
		func(_ context.Context, req *connect.Request[dynamicpb.Message], stream *connect.ServerStream[httpbody.HttpBody]) error {
			return stream.Send(&httpbody.HttpBody{ContentType: "text/plain", Data: []byte(answer(req.Msg))})
		}, append([]connect.HandlerOption{
			connect.WithSchema(md),
			connect.WithRequestInitializer(func(_ connect.Spec, msg any) error {
				*msg.(*dynamicpb.Message) = *dynamicpb.NewMessage(md.Input())
				return nil
			}),
		}, srv.HandlerOptions()...)...))
	srv.Mount("/"+string(sd.FullName())+"/", mux)
}

// BenchmarkRESTStreamBody is a POST of a 1 MiB JSON body to a server
// stream's route among POST routes of which one takes no body: "taken", to
// Tail's route, which takes it (kit reads its message before the chain, in
// case vanguard refuses it), and "refused", to Watch's, which takes none
// (vanguard refuses it, and kit serves the call again without it).
func BenchmarkRESTStreamBody(b *testing.B) {
	tails, err := tailService()
	if err != nil {
		b.Fatal(err)
	}
	watches, err := watchService()
	if err != nil {
		b.Fatal(err)
	}
	level := new(slog.LevelVar)
	s := kittest.NewServer(b, kit.Config{}, func(srv *kit.Server) {
		mountStream(srv, tails, tails.Methods().Get(0), dataLength)
		mountStream(srv, watches, watches.Methods().Get(0), func(*dynamicpb.Message) string { return "1" })
	}, kit.WithLogger(kit.NewLogger(dropWriter{}, "json", level)), kit.WithLogLevel(level))
	data := strings.Repeat("x", 1<<20)
	for _, tc := range []struct{ name, path, want string }{
		{"taken", "/v1/tails", strconv.Itoa(len(data))},
		{"refused", "/v1/watches/a", "1"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			client := s.HTTP1Client()
			body := `{"name":"a","data":"` + data + `"}`
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				resp, err := client.Post(s.URL+tc.path, "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(got) != tc.want {
					b.Fatalf("POST %s = %d %q, want 200 %q", tc.path, resp.StatusCode, got, tc.want)
				}
			}
		})
	}
}

// The body of a server stream's route that takes one, among POST routes
// of which one takes none (Tail beside Poke), reaches the method whole
// though kit reads its start before the chain, in case vanguard refuses
// it: none (an empty request, as grpc-gateway makes it, where connect
// answered 501 "unary request has zero messages"), {}, small, 1 MiB, over
// HTTP/1.1 and h2c; one that does not decode is 400.
func TestRESTStreamBodyTaken(t *testing.T) {
	t.Parallel()
	sd, err := tailService()
	if err != nil {
		t.Fatal(err)
	}
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) { mountStream(srv, sd, sd.Methods().Get(0), dataLength) })
	big := strings.Repeat("y", 1<<20)
	for _, tc := range []struct {
		body, want string
		status     int
	}{
		{"", "0", http.StatusOK},
		{`{}`, "0", http.StatusOK},
		{`{"data":"xyz"}`, "3", http.StatusOK},
		{`{"data":"` + big + `"}`, strconv.Itoa(len(big)), http.StatusOK},
		{`{"data":`, "", http.StatusBadRequest},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, got := restCall(t, client, http.MethodPost, s.URL+"/v1/tails", tc.body, nil)
			if resp.StatusCode != tc.status || tc.want != "" && got != tc.want {
				t.Errorf("POST /v1/tails with a body of %d bytes over %s = %d %.100q, want %d %q", len(tc.body), resp.Proto, resp.StatusCode, got, tc.status, tc.want)
			}
		}
	}
}

// dataLength is the length of a TailRequest's data, in decimal.
func dataLength(req *dynamicpb.Message) string {
	return strconv.Itoa(len(req.Get(req.Descriptor().Fields().ByName("data")).String()))
}
