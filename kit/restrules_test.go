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
// body, CustomGetBody a custom kind GET with a body, and DeleteBody a
// delete with a body beside one without.
var bodiesFile = sync.OnceValues(func() (protoreflect.FileDescriptor, error) {
	service := func(name string, rule *annotations.HttpRule) *descriptorpb.ServiceDescriptorProto {
		o := &descriptorpb.MethodOptions{}
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
		},
	}, protoregistry.GlobalFiles)
	if err != nil {
		return nil, err
	}
	return fd, registerFile(fd)
})

// A route that is a GET with a body (google.api.http has no body on a GET,
// and grpc-gateway's generator refuses one) is refused when its service
// is mounted, the panic naming the method, the route and the rule, as
// Mount panics on a malformed route: vanguard served it, and a call whose
// query kit sets itself (a repeated Timestamp) got 500 "unexpected end of
// JSON input".
func TestRESTGetRouteWithBodyIsRefused(t *testing.T) {
	t.Parallel()
	fd, err := bodiesFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ service, route string }{
		{"GetBody", `get "/v1/gets/{id}" with body "*"`},
		{"BindingGetBody", `get "/v1/bindings/{id}" with body "note"`},
		{"CustomGetBody", `custom GET "/v1/customs/{id}" with body "*"`},
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
		for _, want := range []string{string(sd.FullName()) + ".Do", tc.route, "a GET takes no request body"} {
			if got == nil || !strings.Contains(msg, want) {
				t.Errorf("Mount of %s: panic %q, want one naming %q", tc.service, msg, want)
			}
		}
	}
}

// A DELETE with a body is legal (google.api.http does not forbid it, nor
// RFC 9110; grpc-gateway serves it with allow_delete_body): its route
// mounts and fills the request from the body, and one without a body is
// served beside it.
func TestRESTDeleteRouteWithBody(t *testing.T) {
	t.Parallel()
	fd, err := bodiesFile()
	if err != nil {
		t.Fatal(err)
	}
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		mountEcho(srv, fd.Services().ByName("DeleteBody"))
	})
	for _, tc := range []struct{ path, body, note string }{
		{"/v1/deletes/7", `{"note":"gone"}`, "gone"},
		{"/v1/deletes/7:plain", "", ""},
	} {
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			resp, body := restCall(t, client, http.MethodDelete, s.URL+tc.path, tc.body, nil)
			var got struct{ ID, Note string }
			if err := json.Unmarshal([]byte(body), &got); resp.StatusCode != http.StatusOK || err != nil || got.ID != "7" || got.Note != tc.note {
				t.Errorf("DELETE %s %s over %s = %d %s, want 200 with id 7 and note %q", tc.path, tc.body, resp.Proto, resp.StatusCode, body, tc.note)
			}
		}
	}
}
