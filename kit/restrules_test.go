package kit_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// bodiesFile registers, once, connectkit.bodies.v1, whose services each
// have one method, Do, with the route its name says: GetBody a get with
// a body, BindingGetBody a post whose additional binding is a get with a
// body, CustomGetBody a custom kind GET with a body, DeleteBody a
// delete with a body beside one without, StarBody a custom kind "*" with
// body "*", and StarPeek a custom kind "*" with the body "note" of a
// method without side effects (which vanguard calls with a Connect GET
// when the request is a GET).
var bodiesFile = sync.OnceValues(func() (protoreflect.FileDescriptor, error) {
	service := func(name string, rule *annotations.HttpRule) *descriptorpb.ServiceDescriptorProto {
		o := &descriptorpb.MethodOptions{}
		if name == "StarPeek" {
			o.IdempotencyLevel = descriptorpb.MethodOptions_NO_SIDE_EFFECTS.Enum()
		}
		proto.SetExtension(o, annotations.E_Http, rule)
		return &descriptorpb.ServiceDescriptorProto{
			Name: proto.String(name),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("Do"), InputType: proto.String(".connectkit.bodies.v1.Item"),
				OutputType: proto.String(".connectkit.bodies.v1.Item"), Options: o,
			}},
		}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:        proto.String("connectkit/bodies/v1/bodies.proto"),
		Package:     proto.String("connectkit.bodies.v1"),
		Syntax:      proto.String("proto3"),
		Dependency:  []string{"google/api/annotations.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Item"), Field: []*descriptorpb.FieldDescriptorProto{stringField("id", 1), stringField("note", 2)}}},
		Service: []*descriptorpb.ServiceDescriptorProto{
			service("GetBody", &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/gets/{id}"}, Body: "*"}),
			service("BindingGetBody", &annotations.HttpRule{
				Pattern: &annotations.HttpRule_Post{Post: "/v1/bindings"}, Body: "*",
				AdditionalBindings: []*annotations.HttpRule{{Pattern: &annotations.HttpRule_Get{Get: "/v1/bindings/{id}"}, Body: "note"}},
			}),
			service("CustomGetBody", &annotations.HttpRule{Pattern: &annotations.HttpRule_Custom{Custom: &annotations.CustomHttpPattern{Kind: "GET", Path: "/v1/customs/{id}"}}, Body: "*"}),
			service("DeleteBody", &annotations.HttpRule{
				Pattern: &annotations.HttpRule_Delete{Delete: "/v1/deletes/{id}"}, Body: "*",
				AdditionalBindings: []*annotations.HttpRule{{Pattern: &annotations.HttpRule_Delete{Delete: "/v1/deletes/{id}:plain"}}},
			}),
			service("StarBody", &annotations.HttpRule{Pattern: &annotations.HttpRule_Custom{Custom: &annotations.CustomHttpPattern{Kind: "*", Path: "/v1/stars/{id}"}}, Body: "*"}),
			service("StarPeek", &annotations.HttpRule{Pattern: &annotations.HttpRule_Custom{Custom: &annotations.CustomHttpPattern{Kind: "*", Path: "/v1/peeks/{id}"}}, Body: "note"}),
		},
	}, protoregistry.GlobalFiles)
	if err != nil {
		return nil, err
	}
	return fd, registerFile(fd)
})

// A get route with a body, which grpc-gateway's generator refuses ("must
// not set request body when http method is GET"), is refused when its
// service is mounted, the panic naming the method, the route and the rule,
// as Mount panics on a malformed route. grpc-gateway refuses no custom
// kind GET for its body, and neither does kit (see
// TestRESTRoutesWithBody).
func TestRESTGetRouteWithBodyIsRefused(t *testing.T) {
	t.Parallel()
	fd, err := bodiesFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ service, route string }{
		{"GetBody", `get "/v1/gets/{id}" with body "*"`},
		{"BindingGetBody", `get "/v1/bindings/{id}" with body "note"`},
	} {
		sd := fd.Services().ByName(protoreflect.Name(tc.service))
		srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff})
		if err != nil {
			t.Fatal(err)
		}
		got := func() (p any) {
			defer func() { p = recover() }()
			mountEcho(srv, sd)
			return nil
		}()
		msg := fmt.Sprint(got)
		for _, want := range []string{string(sd.FullName()) + ".Do", tc.route, "a get takes no request body", "must not set request body when http method is GET"} {
			if got == nil || !strings.Contains(msg, want) {
				t.Errorf("Mount of %s: panic %q, want one naming %q", tc.service, msg, want)
			}
		}
	}
}

// The routes with a body that grpc-gateway serves are served, a body
// filling the request as a post's does: a delete's (legal in RFC 9110;
// grpc-gateway serves it with allow_delete_body), beside a delete without
// one; a custom kind GET's, and a GET without a body there too; a custom
// kind "*"'s, whatever the method. Kit refused the custom GET at Mount,
// saying that grpc-gateway does, which refuses a get alone. A method
// without side effects, which vanguard calls with a Connect GET for a GET,
// gets the body too.
func TestRESTRoutesWithBody(t *testing.T) {
	t.Parallel()
	fd, err := bodiesFile()
	if err != nil {
		t.Fatal(err)
	}
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		for _, name := range []protoreflect.Name{"DeleteBody", "CustomGetBody", "StarBody", "StarPeek"} {
			mountEcho(srv, fd.Services().ByName(name))
		}
	})
	checkNoteCalls(t, s, []noteCall{
		{http.MethodDelete, "/v1/deletes/7", `{"note":"gone"}`, "gone"},
		{http.MethodDelete, "/v1/deletes/7:plain", "", ""},
		{http.MethodGet, "/v1/customs/7", `{"note":"b"}`, "b"},
		{http.MethodGet, "/v1/customs/7", "", ""},
		{http.MethodGet, "/v1/stars/7", `{"note":"b"}`, "b"},
		{http.MethodGet, "/v1/stars/7", "", ""},
		{http.MethodPost, "/v1/stars/7", `{"note":"b"}`, "b"},
		{http.MethodPut, "/v1/stars/7", `{"note":"b"}`, "b"},
		{http.MethodGet, "/v1/peeks/7", `"b"`, "b"},
		{http.MethodGet, "/v1/peeks/7", "", ""},
		{http.MethodPost, "/v1/peeks/7", `"b"`, "b"},
	}, nil)
}

// noteCall is a REST call of the Do method of a [bodiesFile] service,
// whose echo must answer id 7 and note.
type noteCall struct{ method, path, body, note string }

// checkNoteCalls makes each of calls over HTTP/1.1 and h2c to s, checks
// its answer, and gives its response to more, when not nil.
func checkNoteCalls(t *testing.T, s *kittest.Server, calls []noteCall, more func(*http.Response)) {
	t.Helper()
	for _, tc := range calls {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, tc.method, s.URL+tc.path, tc.body, nil)
			var got struct{ ID, Note string }
			if err := json.Unmarshal([]byte(body), &got); resp.StatusCode != http.StatusOK || err != nil || got.ID != "7" || got.Note != tc.note {
				t.Errorf("%s %s %s over %s = %d %s, want 200 with id 7 and note %q", tc.method, tc.path, tc.body, resp.Proto, resp.StatusCode, body, tc.note)
			}
			if more != nil {
				more(resp)
			}
		}
	}
}

// A REST GET of a method without side effects, which vanguard calls with
// a Connect GET, is served when the method's handler was built without
// connect.WithIdempotency (by hand, or from a descriptor), which refuses a
// Connect GET (405 with no body): kit calls it again with a Connect POST,
// where vanguard answered the client 500 "unexpected end of JSON input".
// The answer may be gzipped, and says it varies with Accept-Encoding.
func TestRESTGetOfHandlerWithoutIdempotency(t *testing.T) {
	t.Parallel()
	fd, err := bodiesFile()
	if err != nil {
		t.Fatal(err)
	}
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		mountEchoOf(srv, fd.Services().ByName("StarPeek"), false)
	})
	checkNoteCalls(t, s, []noteCall{
		{http.MethodGet, "/v1/peeks/7", "", ""},
		{http.MethodGet, "/v1/peeks/7", `"b"`, "b"},
		{http.MethodPost, "/v1/peeks/7", `"b"`, "b"},
	}, func(resp *http.Response) {
		if vary := resp.Header.Values("Vary"); !strings.Contains(strings.Join(vary, ","), "Accept-Encoding") || resp.Header["Allow"] != nil {
			t.Errorf("%s %s over %s: Vary %q, Allow %q; want Accept-Encoding in Vary, and no Allow", resp.Request.Method, resp.Request.URL.Path, resp.Proto, vary, resp.Header["Allow"])
		}
	})
	// The POST kit made of a GET is still a REST call to the interceptors.
	if got := counterValue(t, s.Registry(), "grpc_server_started_by_protocol_total", map[string]string{"protocol": "rest"}); got != 6 {
		t.Errorf("grpc_server_started_by_protocol_total{protocol=rest} = %v, want 6", got)
	}
}
