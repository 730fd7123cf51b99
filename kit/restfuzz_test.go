package kit_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/durationpb"  // registers google/protobuf/duration.proto
	_ "google.golang.org/protobuf/types/known/fieldmaskpb" // registers google/protobuf/field_mask.proto
	_ "google.golang.org/protobuf/types/known/timestamppb" // registers google/protobuf/timestamp.proto
	_ "google.golang.org/protobuf/types/known/wrapperspb"  // registers google/protobuf/wrappers.proto

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// thingsService is connectkit.fuzz.v1.Things, a service whose REST routes
// have the shapes users give theirs: path variables (one of several
// segments, one of a nested field), a body "*" and a body field, a route
// without a body beside one with it, and a request message with nested,
// repeated, enum, int64, uint64, bytes, double, bool, map (string and int32
// keys), Timestamp, FieldMask, and repeated Timestamp, Duration and
// DoubleValue fields for the query and the body to fill. Registered
// once.
var thingsService = sync.OnceValues(func() (protoreflect.ServiceDescriptor, error) {
	rule := func(r *annotations.HttpRule, idempotency descriptorpb.MethodOptions_IdempotencyLevel) *descriptorpb.MethodOptions {
		o := &descriptorpb.MethodOptions{IdempotencyLevel: idempotency.Enum()}
		proto.SetExtension(o, annotations.E_Http, r)
		return o
	}
	field := fieldProto
	const (
		opt = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		rep = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	)
	method := func(name string, r *annotations.HttpRule, idempotency descriptorpb.MethodOptions_IdempotencyLevel) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{
			Name: proto.String(name), InputType: proto.String(".connectkit.fuzz.v1.Thing"),
			OutputType: proto.String(".connectkit.fuzz.v1.Thing"), Options: rule(r, idempotency),
		}
	}
	return registerService(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("connectkit/fuzz/v1/things.proto"),
		Package:    proto.String("connectkit.fuzz.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/api/annotations.proto", "google/protobuf/timestamp.proto", "google/protobuf/duration.proto", "google/protobuf/wrappers.proto", "google/protobuf/field_mask.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: proto.String("Kind"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("KIND_UNSPECIFIED"), Number: proto.Int32(0)},
				{Name: proto.String("KIND_BOOK"), Number: proto.Int32(1)},
				{Name: proto.String("KIND_SHELF"), Number: proto.Int32(2)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Inner"), Field: []*descriptorpb.FieldDescriptorProto{
				field("text", 1, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, ""),
				field("words", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING, rep, ""),
				field("count", 3, descriptorpb.FieldDescriptorProto_TYPE_INT64, opt, ""),
			}},
			{
				Name: proto.String("Thing"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("name", 1, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, ""),
					field("id", 2, descriptorpb.FieldDescriptorProto_TYPE_INT64, opt, ""),
					field("tags", 3, descriptorpb.FieldDescriptorProto_TYPE_INT32, rep, ""),
					field("kind", 4, descriptorpb.FieldDescriptorProto_TYPE_ENUM, opt, ".connectkit.fuzz.v1.Kind"),
					field("data", 5, descriptorpb.FieldDescriptorProto_TYPE_BYTES, opt, ""),
					field("time", 6, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, opt, ".google.protobuf.Timestamp"),
					field("inner", 7, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, opt, ".connectkit.fuzz.v1.Inner"),
					field("labels", 8, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, rep, ".connectkit.fuzz.v1.Thing.LabelsEntry"),
					field("ratio", 9, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, opt, ""),
					field("flag", 10, descriptorpb.FieldDescriptorProto_TYPE_BOOL, opt, ""),
					field("big", 11, descriptorpb.FieldDescriptorProto_TYPE_UINT64, opt, ""),
					field("times", 12, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, rep, ".google.protobuf.Timestamp"),
					field("waits", 13, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, rep, ".google.protobuf.Duration"),
					field("scores", 14, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, rep, ".google.protobuf.DoubleValue"),
					field("sizes", 15, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, rep, ".connectkit.fuzz.v1.Thing.SizesEntry"),
					field("mask", 16, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, opt, ".google.protobuf.FieldMask"),
				},
				NestedType: []*descriptorpb.DescriptorProto{{
					Name:    proto.String("LabelsEntry"),
					Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
					Field: []*descriptorpb.FieldDescriptorProto{
						field("key", 1, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, ""),
						field("value", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, ""),
					},
				}, {
					Name:    proto.String("SizesEntry"),
					Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
					Field: []*descriptorpb.FieldDescriptorProto{
						field("key", 1, descriptorpb.FieldDescriptorProto_TYPE_INT32, opt, ""),
						field("value", 2, descriptorpb.FieldDescriptorProto_TYPE_INT64, opt, ""),
					},
				}},
			},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Things"),
			Method: []*descriptorpb.MethodDescriptorProto{
				method("Get", &annotations.HttpRule{
					Pattern: &annotations.HttpRule_Get{Get: "/v1/things/{id}"},
					AdditionalBindings: []*annotations.HttpRule{
						{Pattern: &annotations.HttpRule_Get{Get: "/v1/{name=shelves/*}/things/{inner.text}"}},
					},
				}, descriptorpb.MethodOptions_NO_SIDE_EFFECTS),
				method("Create", &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/things"}, Body: "*"},
					descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN),
				method("Update", &annotations.HttpRule{Pattern: &annotations.HttpRule_Patch{Patch: "/v1/things/{id}"}, Body: "inner"},
					descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN),
				method("Touch", &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/things/{id}:touch"}},
					descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN),
				method("Delete", &annotations.HttpRule{Pattern: &annotations.HttpRule_Delete{Delete: "/v1/things/{id}"}},
					descriptorpb.MethodOptions_IDEMPOTENT),
			},
		}},
	})
})

// fieldProto describes a field name, numbered n, of type typ (typeName
// names its message or enum, if any), whose JSON name is its name.
func fieldProto(name string, n int32, typ descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
	f := &descriptorpb.FieldDescriptorProto{
		Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n),
		Type: typ.Enum(), Label: label.Enum(),
	}
	if typeName != "" {
		f.TypeName = proto.String(typeName)
	}
	return f
}

// registerService registers the file fdp and returns its first service.
func registerService(fdp *descriptorpb.FileDescriptorProto) (protoreflect.ServiceDescriptor, error) {
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		return nil, err
	}
	if err := registerFile(fd); err != nil {
		return nil, err
	}
	return fd.Services().Get(0), nil
}

// mountThings mounts an echo of every method of [thingsService] on srv,
// through kit's chain: a handler that never fails, so that any error a
// call gets is the serving's, never the method's.
func mountThings(tb testing.TB, srv *kit.Server) {
	tb.Helper()
	sd, err := thingsService()
	if err != nil {
		tb.Fatal(err)
	}
	mountEcho(srv, sd)
}

// mountEcho mounts on srv, through kit's chain, a handler of every method
// of sd that answers its request.
func mountEcho(srv *kit.Server, sd protoreflect.ServiceDescriptor) {
	mountEchoOf(srv, sd, true)
}

// mountEchoOf is [mountEcho]; idempotency says whether the handler of a
// method without side effects says so (connect.WithIdempotency), as
// protoc-gen-connect-go's do, so that it serves Connect GETs.
func mountEchoOf(srv *kit.Server, sd protoreflect.ServiceDescriptor, idempotency bool) {
	mux := http.NewServeMux()
	methods := sd.Methods()
	for i := range methods.Len() {
		md := methods.Get(i)
		procedure := "/" + string(sd.FullName()) + "/" + string(md.Name())
		opts := []connect.HandlerOption{
			connect.WithSchema(md),
			connect.WithRequestInitializer(func(_ connect.Spec, msg any) error {
				*msg.(*dynamicpb.Message) = *dynamicpb.NewMessage(md.Input())
				return nil
			}),
		}
		if idempotency && md.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
			opts = append(opts, connect.WithIdempotency(connect.IdempotencyNoSideEffects))
		}
		mux.Handle(procedure, connect.NewUnaryHandler(procedure,
			func(_ context.Context, req *connect.Request[dynamicpb.Message]) (*connect.Response[dynamicpb.Message], error) {
				return connect.NewResponse(req.Msg), nil
			}, append(opts, srv.HandlerOptions()...)...))
	}
	srv.Mount("/"+string(sd.FullName())+"/", mux)
}

// fuzzLog records what a server logs: its rpc lines, its rejected lines
// and the suppressed counts these report, and any line that names a panic.
type fuzzLog struct {
	mu         sync.Mutex
	rpc        int
	rejected   int
	suppressed int64
	panics     []string
}

func (l *fuzzLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *fuzzLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *fuzzLog) WithGroup(string) slog.Handler            { return l }

func (l *fuzzLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		if a.Key == "suppressed" {
			l.suppressed += a.Value.Int64()
		}
		return true
	})
	switch r.Message {
	case "rpc":
		l.rpc++
	case "rpc rejected before the interceptor chain":
		l.rejected++
	}
	if strings.Contains(line, "panic") {
		l.panics = append(l.panics, line)
	}
	return nil
}

// panicCount returns how many lines naming a panic were logged so far.
func (l *fuzzLog) panicCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.panics)
}

// panicsSince returns the lines naming a panic logged after the first n.
func (l *fuzzLog) panicsSince(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.panics[n:]...)
}

// snapshot returns the counts so far.
func (l *fuzzLog) snapshot() (rpc, rejected int, suppressed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rpc, l.rejected, l.suppressed
}

// fuzzServer is a server of [thingsService] for FuzzServingPort, with what
// it logs and counts.
type fuzzServer struct {
	*kittest.Server
	log *fuzzLog
	reg *prometheus.Registry
}

// counts returns the calls s counted: served through the chain
// (grpc_server_handled_total), rejected before it
// (kit_rejected_calls_total) and of unknown procedures.
func (s *fuzzServer) counts(tb testing.TB) (handled, rejected, unknown float64) {
	tb.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		var sum float64
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		switch f.GetName() {
		case "grpc_server_handled_total":
			handled = sum
		case "kit_rejected_calls_total":
			rejected = sum
		case "kit_unknown_procedure_calls_total":
			unknown = sum
		}
	}
	return handled, rejected, unknown
}

func newFuzzServer(tb testing.TB, cfg kit.Config, opts ...kit.Option) *fuzzServer {
	tb.Helper()
	s := &fuzzServer{log: &fuzzLog{}, reg: prometheus.NewRegistry()}
	s.Server = kittest.NewServer(tb, cfg, func(srv *kit.Server) { mountThings(tb, srv) },
		append([]kit.Option{kit.WithLogger(slog.New(s.log)), kit.WithRegistry(s.reg)}, opts...)...)
	return s
}

// newFuzzServers returns the servers the fuzz targets call: one with
// kit's defaults, one with CORS for https://a.example and a 64-byte body
// limit, and one that refuses, as Unauthenticated with a challenge, the
// calls without "Authorization: Bearer ok" (kit.WithAuth).
func newFuzzServers(tb testing.TB) []*fuzzServer {
	tb.Helper()
	auth := kit.WithAuth(func(_ context.Context, r *http.Request) (any, error) {
		if r.Header.Get("Authorization") == "Bearer ok" {
			return nil, nil
		}
		err := connect.NewError(connect.CodeUnauthenticated, errors.New("no token"))
		err.Meta().Set("WWW-Authenticate", "Bearer")
		return nil, err
	})
	return []*fuzzServer{
		newFuzzServer(tb, kit.Config{}),
		newFuzzServer(tb, kit.Config{CORSAllowedOrigins: []string{"https://a.example"}, MaxRequestBytes: 64}),
		newFuzzServer(tb, kit.Config{}, auth),
	}
}

// FuzzServingPort sends one request, made of fuzzed parts (method, path
// and query, Content-Type, other headers, body), to a running kit server
// with REST routes of every shape (see [thingsService]) and an echo
// handler that never fails, over HTTP/1.1 (on a connection of its own,
// then a second request on it) or h2c, and checks what must hold for any
// request: the server answers it (over HTTP/1.1: never a closed connection
// without a response) and the next one; an error is a google.rpc.Status
// with the HTTP status of its code, a Connect error, or one of the plain
// answers of net/http and vanguard; nothing is a 500 or an Internal,
// Unknown or DataLoss error; no answer leaks the server's addresses, file
// paths or Go type names; nothing logs a panic; and a call
// kit answers is counted once, and logged once as an rpc line (counted
// in grpc_server_handled_total) or as a rejected line (or reported as
// suppressed by the next one), checked over h2c once kit counted it.
// mode chooses the protocol (bit 0: h2c), a gzipped body (bit 1, with
// Content-Encoding: gzip) and the server (the other bits, see
// [newFuzzServers]).
//
// The seeds are the README's and the tests' requests; vanguard v0.4.0's
// panic on "?inner.=1" and connect's Go type names in "unmarshal into
// *dynamicpb.Message" were its first finds.
func FuzzServingPort(f *testing.F) {
	for _, seed := range []struct {
		mode                              uint8
		method, target, contentType, hdrs string
		body                              string
	}{
		{0, "GET", "/v1/things/7", "", "", ""},
		{1, "GET", "/v1/things/7?name=a&tags=1&tags=2&kind=KIND_BOOK&data=aGk&time=2024-01-02T03:04:05Z&inner.words=x&inner.count=3&ratio=1.5&flag=true&big=18446744073709551615", "", "", ""},
		{0, "GET", "/v1/shelves/s1/things/hello?id=3", "", "", ""},
		{0, "GET", "/v1/things/7?_=1733561497", "", "", ""},
		{0, "GET", "/v1/things/7?name.x=1", "", "", ""},
		{0, "GET", "/v1/things/7?=1", "", "", ""},
		{0, "GET", "/v1/things/7?labels.a=b", "", "", ""},
		{0, "GET", "/v1/things/7?name.=1", "", "", ""},
		{1, "GET", "/v1/things/7?inner.=1", "", "", ""},
		{0, "GET", "/v1/things/7?inner.text.=1", "", "", ""},
		{0, "GET", "/v1/things/7?inner%2E=1", "", "", ""},
		{0, "GET", "/v1/things/7?inner..text=1", "", "", ""},
		{0, "GET", "/v1/things/7?name=%A7", "", "", ""},
		{1, "GET", "/v1/shelves/%A7/things/%C3", "", "", ""},
		{0, "POST", "/v1/things", "application/json", "", "\xa70"},
		{0, "GET", "/v1/things/7?kind=KIND_NONE", "", "", ""},
		{0, "GET", "/v1/things/7?time=yesterday", "", "", ""},
		{0, "GET", "/v1/things/7?data=%%%", "", "", ""},
		{0, "GET", "/v1/things/seven", "", "", ""},
		{0, "GET", "/v1/things/9223372036854775808", "", "", ""},
		{0, "GET", "/v1/things/a%2Fb", "", "", ""},
		{0, "GET", "/v1/things/%25", "", "", ""},
		{0, "GET", "/v1/%74hings/1", "", "", ""},
		{0, "HEAD", "/v1/things/7", "", "", ""},
		{0, "GET", "/v1/things/7", "application/json", "", `{"id":"9"}`},
		{0, "GET", "/v1/things/7", "application/x-www-form-urlencoded", "", "name=x"},
		{0, "POST", "/v1/things", "application/json", "", `{"name":"a","id":"1","tags":[1,2],"kind":"KIND_SHELF","data":"aGk=","time":"2024-01-02T03:04:05Z","inner":{"text":"t","words":["w"]},"labels":{"a":"b"},"ratio":"NaN","flag":true,"big":"1"}`},
		{1, "POST", "/v1/things", "application/json;charset=UTF-8", "", `{"id":1}`},
		{0, "POST", "/v1/things", "Application/JSON; Charset=\"utf-8\"", "", `{}`},
		{0, "POST", "/v1/things", "application/json; charset=iso-8859-1", "", `{}`},
		{0, "POST", "/v1/things", "application/x-www-form-urlencoded", "", `name=a`},
		{0, "POST", "/v1/things", "application/json", "", `{"id":`},
		{0, "POST", "/v1/things", "application/json", "", `{"id":"many"}`},
		{0, "POST", "/v1/things", "application/json", "", `{"time":"2024-13-45T99:99:99Z"}`},
		{0, "POST", "/v1/things", "application/json", "", `{"kind":99}`},
		{0, "POST", "/v1/things", "application/json", "", `{"labels":[1]}`},
		{0, "POST", "/v1/things", "", "", `{}`},
		{2, "POST", "/v1/things", "application/json", "", `{"name":"gz"}`},
		{0, "POST", "/v1/things", "application/json", "Content-Encoding: gzip", `not gzip`},
		{0, "PATCH", "/v1/things/4", "application/json", "", `{"text":"t","words":["a"],"count":"2"}`},
		{1, "PATCH", "/v1/things/4", "application/json", "", `"t"`},
		{0, "POST", "/v1/things/4:touch", "", "", ""},
		{0, "POST", "/v1/things/4:touch", "application/json", "", `{"id":"5"}`},
		{0, "DELETE", "/v1/things/4", "", "", ""},
		{0, "DELETE", "/v1/things/4", "text/plain", "", "ignored"},
		{0, "PUT", "/v1/things/4", "application/json", "", `{}`},
		{0, "OPTIONS", "/v1/things/4", "", "Origin: https://a.example\nAccess-Control-Request-Method: PATCH", ""},
		{0, "GET", "/v1/things/4", "", "Origin: https://a.example", ""},
		{0, "GET", "/v1/things/4", "", "Connect-Timeout-Ms: 1", ""},
		{0, "GET", "/v1/things/4", "", "Grpc-Timeout: 1n", ""},
		{0, "GET", "/v1/things/4", "", "X-Server-Timeout: 0.001", ""},
		{0, "GET", "/v1/things/4", "", "X-Request-Id: fuzz-1", ""},
		{8, "GET", "/v1/things/4", "", "Authorization: Bearer ok", ""},
		{9, "POST", "/v1/things", "application/json", "Authorization: Bearer no", `{}`},
		{8, "POST", "/connectkit.fuzz.v1.Things/Create", "application/json", "", `{}`},
		{9, "POST", "/connectkit.fuzz.v1.Things/Create", "application/grpc", "Te: trailers", "\x00\x00\x00\x00\x00"},
		{8, "OPTIONS", "/v1/things/4", "", "Origin: https://a.example\nAccess-Control-Request-Method: GET", ""},
		{0, "GET", "/v1/unknown", "", "", ""},
		{0, "POST", "/v1/unknown", "application/json", "", `{}`},
		{0, "POST", "/connectkit.fuzz.v1.Things/Create", "application/json", "", `{"id":"1"}`},
		{0, "POST", "/connectkit.fuzz.v1.Things/Create", "application/json", "", `{"id":`},
		{0, "GET", "/connectkit.fuzz.v1.Things/Get?connect=v1&encoding=json&message=%7B%7D", "", "", ""},
		{0, "GET", "/connectkit.fuzz.v1.Things/Create?connect=v1&encoding=json&message=%7B%7D", "", "", ""},
		{0, "POST", "/connectkit.fuzz.v1.Things/Nope", "application/json", "", `{}`},
		{1, "POST", "/connectkit.fuzz.v1.Things/Create", "application/grpc", "Te: trailers", "\x00\x00\x00\x00\x00"},
		{0, "POST", "/connectkit.fuzz.v1.Things/Create", "application/grpc-web+proto", "", "\x00\x00\x00\x00\x01\x10"},
		{0, "POST", "/connectkit.fuzz.v1.Things/Create", "application/xml", "", `<a/>`},
	} {
		f.Add(seed.mode, seed.method, seed.target, seed.contentType, seed.hdrs, []byte(seed.body))
	}
	servers := newFuzzServers(f)
	f.Fuzz(func(t *testing.T, mode uint8, method, target, contentType, hdrs string, body []byte) {
		servers[int(mode>>2)%len(servers)].send(t, mode, method, target, contentType, hdrs, body)
	})
}

// send sends s the request of FuzzServingPort's parts and checks its
// answer and what s counted and logged of it.
func (s *fuzzServer) send(t *testing.T, mode uint8, method, target, contentType, hdrs string, body []byte) {
	req, ok := fuzzRequest(s.URL, method, target, contentType, hdrs, body, mode&2 != 0)
	if !ok {
		return // no client sends it
	}
	input := strings.Join([]string{method, target, contentType, hdrs, string(body)}, "\n")
	if unescaped, err := url.PathUnescape(target); err == nil {
		input += "\n" + unescaped
	}
	if unescaped, err := url.QueryUnescape(target); err == nil {
		input += "\n" + unescaped
	}
	what := fmt.Sprintf("%s %q (Content-Type %q, headers %q, body %q)", method, target, contentType, hdrs, body)
	panics := s.log.panicCount()
	defer func() {
		if p := s.log.panicsSince(panics); len(p) > 0 {
			t.Fatalf("%s: logged a panic: %s", what, p[0])
		}
	}()
	if mode&1 == 0 {
		s.http1(t, what+" over HTTP/1.1", input, req)
		return
	}
	what += " over h2c"
	before := s.counted(t)
	res, err := s.HTTP2Client().Do(req)
	got := readAnswer(t, what, res, err)
	checkAnswer(t, what, s.URL, input, res, got)
	s.checkCounted(t, what, before, res, got)
	checkNextRequest(t, s.HTTP2Client(), s.URL)
}

// thingsRoutes are the calls FuzzRESTRoute makes, one of each route of
// [thingsService] and of the Connect protocol: the method, the path with
// "{}" where its path variables go, and the body's Content-Type.
var thingsRoutes = []struct{ method, path, contentType string }{
	{http.MethodGet, "/v1/things/{}", ""},
	{http.MethodGet, "/v1/shelves/{}/things/{}", ""},
	{http.MethodPost, "/v1/things", "application/json"},
	{http.MethodPatch, "/v1/things/{}", "application/json"},
	{http.MethodPost, "/v1/things/{}:touch", ""},
	{http.MethodDelete, "/v1/things/{}", ""},
	{http.MethodHead, "/v1/things/{}", ""},
	{http.MethodPost, "/connectkit.fuzz.v1.Things/Create", "application/json"},
	{http.MethodGet, "/connectkit.fuzz.v1.Things/Get", ""},
}

// FuzzRESTRoute is FuzzServingPort on the routes that exist: route picks
// one of [thingsRoutes], whose path variables get vars (split at "|", as
// sent, or escaped where net/http would not send it so), whose query is
// query and body body; a Connect GET sends body as its message. Its
// checks are FuzzServingPort's; mode is its mode.
func FuzzRESTRoute(f *testing.F) {
	for _, seed := range []struct {
		mode, route       uint8
		vars, query, body string
	}{
		{0, 0, "7", "name=a&tags=1&tags=2&kind=KIND_BOOK&data=aGk&time=2024-01-02T03:04:05Z&inner.words=x&ratio=1.5&flag=true&big=1", ""},
		{1, 0, "-9223372036854775808", "kind=2&time=1970-01-01T00:00:00.000000001Z&ratio=-Infinity", ""},
		{0, 0, "%41", "inner.count=9223372036854775807&data=_-8&labels=x", ""},
		{0, 1, "s|t%2Fu", "id=1&name=other", ""},
		{1, 1, "%25|%E2%82%AC", "inner.text=x", ""},
		{0, 2, "", "id=3", `{"name":"a","id":"1","tags":[1,-2],"kind":"KIND_SHELF","data":"aGk=","time":"2024-01-02T03:04:05+01:00","inner":{"text":"t","words":["w"],"count":1},"labels":{"a":"b"},"ratio":1e308,"flag":false,"big":"18446744073709551615"}`},
		{0, 2, "", "", `{"tags":null,"inner":null,"time":null,"labels":{"":""}}`},
		{2, 2, "", "", `{"name":"\u00e9\ud83d\ude00"}`},
		{4, 2, "", "", `{"name":"more than sixty-four bytes, which the second server refuses with 429"}`},
		{0, 3, "4", "name=n", `{"text":"t","words":["a","b"],"count":"2"}`},
		{1, 3, "4", "", `null`},
		{0, 4, "4", "tags=1", ""},
		{0, 4, "4", "", `{"id":"5"}`},
		{0, 5, "4", "inner.text=a", ""},
		{0, 6, "4", "", ""},
		{0, 7, "", "", `{"id":"1","labels":{"a":"b"}}`},
		{1, 7, "", "", `{"id":`},
		{0, 8, "", "", `{"inner":{"text":"x"}}`},
		{0, 8, "", "", `{`},
		{8, 0, "7", "", ""},
		{9, 2, "", "", `{"id":"1"}`},
		{0, 0, "7", "times=2020-01-01T00:00:00Z&times=x&waits=1.5s&scores=NaN", ""},
		{1, 4, "7", "labels[a]=b&labels%5Bc%5D=d&sizes[1]=-2&name[k]=v", ""},
		{0, 2, "", "times=2021-01-01T00:00:00Z&labels[a]=q", `{"times":["2020-01-01T00:00:00Z"],"labels":{"a":"b"}}`},
		{0, 0, "7", "time=x&time.nanos=-5&time.seconds=1", ""},
		{0, 4, "7", "mask=display_name,inner.text&mask=innerText", ""},
		{1, 1, "s|t", "inner.words=a&times=%FF&labels[%FF]=x", ""},
	} {
		f.Add(seed.mode, seed.route, seed.vars, seed.query, []byte(seed.body))
	}
	servers := newFuzzServers(f)
	f.Fuzz(func(t *testing.T, mode, route uint8, vars, query string, body []byte) {
		r := thingsRoutes[int(route)%len(thingsRoutes)]
		path := r.path
		for v := range strings.SplitSeq(vars, "|") {
			if !strings.Contains(path, "{}") {
				break
			}
			if _, err := url.Parse(v); err != nil || strings.ContainsAny(v, "/?#") {
				v = url.PathEscape(v)
			}
			path = strings.Replace(path, "{}", v, 1)
		}
		path = strings.ReplaceAll(path, "{}", "")
		if r.method == http.MethodGet && strings.HasPrefix(r.path, "/connectkit.") {
			query = "connect=v1&encoding=json&message=" + url.QueryEscape(string(body)) + "&" + query
			body = nil
		}
		if query != "" {
			path += "?" + query
		}
		servers[int(mode>>2)%len(servers)].send(t, mode, r.method, path, r.contentType, "", body)
	})
}

// fuzzRequest builds the request of FuzzServingPort's parts, with body
// gzipped if gz, or reports that no net/http client would send it.
func fuzzRequest(base, method, target, contentType, hdrs string, body []byte, gz bool) (*http.Request, bool) {
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") {
		return nil, false
	}
	u, err := url.Parse(base + target)
	if err != nil || u.Host != strings.TrimPrefix(base, "http://") {
		return nil, false
	}
	if gz {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write(body)
		_ = w.Close()
		body = b.Bytes()
	}
	var r io.Reader
	if len(body) > 0 {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u.String(), r)
	if err != nil || req.URL.Host != u.Host {
		return nil, false
	}
	for line := range strings.SplitSeq(hdrs, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Trailer", "Upgrade", "Keep-Alive",
			"Proxy-Connection", "Te", "Http2-Settings":
			if http.CanonicalHeaderKey(name) != "Te" || value != "trailers" {
				continue // framing: net/http's, not the request's
			}
		}
		if !validHeaderName(name) || !validHeaderValue(value) {
			return nil, false
		}
		req.Header.Add(name, value)
	}
	if contentType != "" {
		if !validHeaderValue(contentType) {
			return nil, false
		}
		req.Header.Set("Content-Type", contentType)
	}
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	return req, true
}

// validHeaderName says whether name is a token, as net/http's client
// requires of a header's name.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// readAnswer returns the body of res, the answer to what (or err, no
// answer), read whole.
func readAnswer(t *testing.T, what string, res *http.Response, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: no answer: %v", what, err)
	}
	got, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", what, err)
	}
	return got
}

// counted is what a server had counted and logged at one time.
type counted struct {
	handled, rejected, unknown float64 // see [fuzzServer.counts]
	rpc, lines                 int     // rpc and rejected lines
	suppressed                 int64   // rejected lines' suppressed counts
}

// counted returns what s has counted and logged so far.
func (s *fuzzServer) counted(tb testing.TB) counted {
	tb.Helper()
	var c counted
	c.handled, c.rejected, c.unknown = s.counts(tb)
	c.rpc, c.lines, c.suppressed = s.log.snapshot()
	return c
}

// checkCounted checks what s counted and logged of one request since
// before, which got res, whose body is body: a call that kit answered once
// (see [kitCall]), nothing else none. Over h2c, where the client may read
// the answer before kit counts it, it waits for the count (a minute at
// most: a hang fails, not a timing).
func (s *fuzzServer) checkCounted(t *testing.T, what string, before counted, res *http.Response, body []byte) {
	t.Helper()
	want := kitCall(res, body)
	after := s.counted(t)
	for deadline := time.Now().Add(time.Minute); want && after.handled+after.rejected+after.unknown == before.handled+before.rejected+before.unknown && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		after = s.counted(t)
	}
	dHandled, dRejected, dUnknown := after.handled-before.handled, after.rejected-before.rejected, after.unknown-before.unknown
	dRPC, dLines := after.rpc-before.rpc, after.lines-before.lines
	if dRPC != int(dHandled) || dRPC > 1 {
		t.Fatalf("%s: %d rpc lines, %v calls counted in grpc_server_handled_total; want one of each or none", what, dRPC, dHandled)
	}
	if dLines > int(dRejected) || dRejected > 1 {
		t.Fatalf("%s: %v calls counted rejected, %d rejected lines; want one at most, each line counted", what, dRejected, dLines)
	}
	// Each rejected call is logged, or reported suppressed by the next line.
	if pending := int64(after.rejected) - int64(after.lines) - after.suppressed; pending < 0 || dLines > 0 && pending != 0 {
		t.Fatalf("%s: %v rejected calls counted, %d logged, %d reported suppressed", what, after.rejected, after.lines, after.suppressed)
	}
	if calls := dHandled + dRejected + dUnknown; calls != 0 && calls != 1 || want != (calls == 1) {
		t.Fatalf("%s: answered %d %q: counted %v served, %v rejected, %v unknown; want it counted once: %v",
			what, res.StatusCode, body, dHandled, dRejected, dUnknown, want)
	}
}

// http1 sends req to s over an HTTP/1.1 connection of its own, then a
// request for a path that nothing serves on the same connection (or a new
// one, where the server closed it), whose answer says that the handler
// of req returned, and checks req's answer and what s logged and counted
// of it.
func (s *fuzzServer) http1(t *testing.T, what, input string, req *http.Request) {
	var raw bytes.Buffer
	if err := req.Write(&raw); err != nil {
		return // no client sends it
	}
	before := s.counted(t)
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute)) // a hang fails, not a timing
	if _, err := conn.Write(raw.Bytes()); err != nil {
		t.Fatalf("%s: writing: %v", what, err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, req)
	got := readAnswer(t, what, res, err)
	checkAnswer(t, what, s.URL, input, res, got)
	// The next request on the connection is served once req's handler
	// returned; where the server closes the connection, it does so then.
	next, _ := http.NewRequest(http.MethodGet, s.URL+"/fuzz/next", nil)
	if res.Close {
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("%s: after a response with Connection: close: %v", what, err)
		}
		checkNextRequest(t, s.HTTP1Client(), s.URL)
	} else {
		if err := next.Write(conn); err != nil {
			t.Fatalf("%s: the next request: %v", what, err)
		}
		nres, err := http.ReadResponse(br, next)
		if err != nil {
			t.Fatalf("%s: no response to the next request: %v", what, err)
		}
		_, _ = io.Copy(io.Discard, nres.Body)
		if nres.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: the next request got %d, want 404", what, nres.StatusCode)
		}
	}
	s.checkCounted(t, what, before, res, got)
}

// kitCall says whether the response res, whose body is body, is kit's
// answer to a call: anything but net/http's plain answers (a 404 for a
// path nothing serves, a 400 for a request it cannot read, a HEAD's too),
// kit's REST 404 for a path no route matches, a CORS preflight's answer
// and the ServeMux's redirect to a path's clean form.
func kitCall(res *http.Response, body []byte) bool {
	switch {
	case res.StatusCode >= 300 && res.StatusCode < 400: // the ServeMux's redirect to a clean path
		return false
	case res.StatusCode == http.StatusNotFound && strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain"):
		return false
	case res.StatusCode == http.StatusNotFound && res.Header.Get("Content-Type") == "application/json" && res.Header.Get("X-Content-Type-Options") == "nosniff":
		return false // kit's REST 404 of a path no route matches (a HEAD's without its body)
	case res.StatusCode == http.StatusBadRequest && res.Close && bytes.HasPrefix(body, []byte("400 Bad Request")):
		return false
	case res.StatusCode == http.StatusBadRequest && res.Close && res.Request.Method == http.MethodHead &&
		res.Header.Get("Content-Type") == "text/plain; charset=utf-8":
		return false // the same, its body unread: a HEAD's answer has none
	case res.Request.Method == http.MethodOptions && res.Header.Get("Access-Control-Allow-Origin") != "":
		return false
	}
	return true
}

// checkNextRequest checks that the server at url still answers.
func checkNextRequest(t *testing.T, client *http.Client, url string) {
	t.Helper()
	res, err := client.Get(url + "/fuzz/next")
	if err != nil {
		t.Fatalf("the next request: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("the next request got %d, want 404", res.StatusCode)
	}
}

// restHTTPStatus is the HTTP status of each code in a google.rpc.Status
// that a REST route answers (vanguard's mapping, README "REST routes").
var restHTTPStatus = [...]int{200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401}

// connectHTTPStatus is the HTTP status of each code of a Connect error.
var connectHTTPStatus = map[string]int{
	"canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
	"already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
	"aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
	"data_loss": 500, "unauthenticated": 401,
}

// leaks are what no answer may hold unless the request did: Go type
// names, addresses in memory, source file paths.
var leaks = []string{"*http.", "main.", "0x", ".go:", "/root/", "/tmp/", "goroutine ", "dynamicpb", "*connect.", "runtime error"}

// checkAnswer checks res, the answer to a request made of input, whose
// body is body, from the server at serverURL.
func checkAnswer(t *testing.T, what, serverURL, input string, res *http.Response, body []byte) {
	t.Helper()
	text := string(body)
	for k, vs := range res.Header {
		text += "\n" + k + ": " + strings.Join(vs, ",")
	}
	for k, vs := range res.Trailer {
		text += "\n" + k + ": " + strings.Join(vs, ",")
	}
	host := strings.TrimPrefix(serverURL, "http://")
	for _, leak := range append(leaks, host) {
		if strings.Contains(text, leak) && !strings.Contains(input, leak) {
			t.Fatalf("%s: the answer holds %q: %d %s", what, leak, res.StatusCode, text)
		}
	}
	if strings.Contains(text, "127.0.0.1:") && !strings.Contains(input, "127.0.0.1:") {
		t.Fatalf("%s: the answer names an address: %d %s", what, res.StatusCode, text)
	}
	if res.StatusCode == http.StatusInternalServerError {
		t.Fatalf("%s: 500 from a handler that never fails: %s", what, body)
	}
	if res.StatusCode < http.StatusBadRequest || res.Request.Method == http.MethodHead {
		return // a HEAD's answer has no body to check
	}
	ct := res.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/json"):
		var e struct {
			Code    json.RawMessage `json:"code"`
			Message *string         `json:"message"`
		}
		if err := json.Unmarshal(body, &e); err != nil || len(e.Code) == 0 {
			t.Fatalf("%s: %d, a JSON error that is neither a google.rpc.Status nor a Connect error: %s", what, res.StatusCode, body)
		}
		if n, err := strconv.Atoi(string(e.Code)); err == nil { // google.rpc.Status
			unsupported := n == int(connect.CodeInvalidArgument) && res.StatusCode == http.StatusUnsupportedMediaType // a type or encoding a route does not take
			// a method no route of the path takes: Unimplemented, as
			// grpc-gateway answers it, the status staying 405 with its Allow
			notAllowed := n == int(connect.CodeUnimplemented) && res.StatusCode == http.StatusMethodNotAllowed
			if n <= 0 || n >= len(restHTTPStatus) || restHTTPStatus[n] != res.StatusCode && !unsupported && !notAllowed {
				t.Fatalf("%s: HTTP %d for google.rpc.Status code %d: %s", what, res.StatusCode, n, body)
			}
			if notAllowed && (res.Header.Get("Allow") == "" || e.Message == nil ||
				!strings.HasPrefix(*e.Message, "method "+strconv.Quote(res.Request.Method)+" not allowed: the path takes "+res.Header.Get("Allow"))) {
				t.Fatalf("%s: a 405 that does not name the method sent and those taken (Allow %q): %s", what, res.Header.Get("Allow"), body)
			}
			if ct := res.Request.Header.Get("Content-Type"); unsupported && e.Message != nil &&
				strings.HasPrefix(*e.Message, "unsupported content type") && len(ct) < 128 &&
				!strings.HasPrefix(*e.Message, "unsupported content type "+strconv.Quote(ct)+":") {
				t.Fatalf("%s: a 415 that does not name the type sent, %q: %s", what, ct, body)
			}
			if n == int(connect.CodeInternal) || n == int(connect.CodeUnknown) || n == int(connect.CodeDataLoss) {
				t.Fatalf("%s: %s from a handler that never fails: %s", what, connect.Code(n), body)
			}
			return
		}
		var code string
		if err := json.Unmarshal(e.Code, &code); err != nil {
			t.Fatalf("%s: %d, an error whose code is %s: %s", what, res.StatusCode, e.Code, body)
		}
		want, ok := connectHTTPStatus[code]
		if code == "unimplemented" && res.StatusCode == http.StatusNotFound {
			want = http.StatusNotFound // kit's answer to an unknown procedure, as connect's mux gives
		}
		if !ok || want != res.StatusCode {
			t.Fatalf("%s: HTTP %d for Connect code %q: %s", what, res.StatusCode, code, body)
		}
		if want >= 500 && code != "unavailable" && code != "deadline_exceeded" && code != "unimplemented" {
			t.Fatalf("%s: %s from a handler that never fails: %s", what, code, body)
		}
	case strings.HasPrefix(ct, "text/plain"):
		switch res.StatusCode {
		case http.StatusNotFound:
		case http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge, http.StatusHTTPVersionNotSupported, http.StatusNotImplemented:
			if !res.Close {
				t.Fatalf("%s: a plain %d that is not net/http's: %s", what, res.StatusCode, body)
			}
		default:
			t.Fatalf("%s: a plain %d: %s", what, res.StatusCode, body)
		}
	case ct == "" && (res.StatusCode == http.StatusMethodNotAllowed || res.StatusCode == http.StatusUnsupportedMediaType):
		// vanguard's 405 and 415 and connect's 415 without a body
	default:
		t.Fatalf("%s: %d with Content-Type %q: %s", what, res.StatusCode, ct, body)
	}
}
