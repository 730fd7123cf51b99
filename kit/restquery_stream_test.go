package kit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// filesService is connectkit.fuzz.v1.Files, whose methods stream
// google.api.HttpBody over REST routes, as vanguard serves streams there:
// Download from GET /v1/files/{name}, Upload (a client stream, whose
// request has a google.api.HttpBody, body) to POST
// /v1/files/{name}:upload. Their request has a map, a repeated
// Timestamp and a FieldMask for the query to fill. Registered once.
var filesService = sync.OnceValues(func() (protoreflect.ServiceDescriptor, error) {
	opts := &descriptorpb.MethodOptions{}
	proto.SetExtension(opts, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/files/{name}"}})
	upload := &descriptorpb.MethodOptions{}
	proto.SetExtension(upload, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/files/{name}:upload"}, Body: "body"})
	get := &descriptorpb.MethodOptions{}
	proto.SetExtension(get, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/blobs/{name}"}})
	stat := &descriptorpb.MethodOptions{}
	proto.SetExtension(stat, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/stats/{name}"}})
	put := &descriptorpb.MethodOptions{}
	proto.SetExtension(put, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Put{Put: "/v1/blobs/{name}"}, Body: "body"})
	peek := &descriptorpb.MethodOptions{IdempotencyLevel: descriptorpb.MethodOptions_NO_SIDE_EFFECTS.Enum()}
	proto.SetExtension(peek, annotations.E_Http, &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/peeks/{name}"}, Body: "body"})
	field := func(name string, n int32, typ descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n),
			Type: typ.Enum(), Label: label.Enum(), TypeName: proto.String(typeName),
		}
	}
	const (
		opt = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		rep = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		str = descriptorpb.FieldDescriptorProto_TYPE_STRING
		msg = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	name := field("name", 1, str, opt, "")
	name.TypeName = nil
	key, value := field("key", 1, str, opt, ""), field("value", 2, str, opt, "")
	key.TypeName, value.TypeName = nil, nil
	tags := field("tags", 6, str, rep, "")
	size := field("size", 7, descriptorpb.FieldDescriptorProto_TYPE_INT64, opt, "")
	count := field("count", 8, descriptorpb.FieldDescriptorProto_TYPE_UINT32, opt, "")
	flag := field("flag", 9, descriptorpb.FieldDescriptorProto_TYPE_BOOL, opt, "")
	ratio := field("ratio", 10, descriptorpb.FieldDescriptorProto_TYPE_FLOAT, opt, "")
	for _, f := range []*descriptorpb.FieldDescriptorProto{tags, size, count, flag, ratio} {
		f.TypeName = nil
	}
	return registerService(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("connectkit/fuzz/v1/files.proto"),
		Package:    proto.String("connectkit.fuzz.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/api/annotations.proto", "google/api/httpbody.proto", "google/protobuf/timestamp.proto", "google/protobuf/field_mask.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("DownloadRequest"),
			Field: []*descriptorpb.FieldDescriptorProto{
				name,
				field("labels", 2, msg, rep, ".connectkit.fuzz.v1.DownloadRequest.LabelsEntry"),
				field("times", 3, msg, rep, ".google.protobuf.Timestamp"),
				field("body", 4, msg, opt, ".google.api.HttpBody"),
				field("mask", 5, msg, opt, ".google.protobuf.FieldMask"),
				tags, size, count, flag, ratio,
			},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name:    proto.String("LabelsEntry"),
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
				Field:   []*descriptorpb.FieldDescriptorProto{key, value},
			}},
		}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Files"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("Download"), InputType: proto.String(".connectkit.fuzz.v1.DownloadRequest"),
				OutputType: proto.String(".google.api.HttpBody"), ServerStreaming: proto.Bool(true), Options: opts,
			}, {
				Name: proto.String("Upload"), InputType: proto.String(".connectkit.fuzz.v1.DownloadRequest"),
				OutputType: proto.String(".google.api.HttpBody"), ClientStreaming: proto.Bool(true), Options: upload,
			}, {
				Name: proto.String("Get"), InputType: proto.String(".connectkit.fuzz.v1.DownloadRequest"),
				OutputType: proto.String(".google.api.HttpBody"), Options: get,
			}, {
				Name: proto.String("Stat"), InputType: proto.String(".connectkit.fuzz.v1.DownloadRequest"),
				OutputType: proto.String(".connectkit.fuzz.v1.DownloadRequest"), Options: stat,
			}, {
				Name: proto.String("Put"), InputType: proto.String(".connectkit.fuzz.v1.DownloadRequest"),
				OutputType: proto.String(".google.api.HttpBody"), Options: put,
			}, {
				Name: proto.String("Peek"), InputType: proto.String(".connectkit.fuzz.v1.DownloadRequest"),
				OutputType: proto.String(".google.api.HttpBody"), Options: peek,
			}},
		}},
	})
})

// filesServer serves [filesService] on a kit.Server: Download answers
// one google.api.HttpBody of type application/json, the JSON of its
// request without the body and a newline, then, for a label pad=N, a
// second of N bytes "z"; Upload answers the first with the data of every
// message's body after the newline. Get (unary, GET /v1/blobs/{name}, of
// unknown idempotency, as most routed methods are) answers pad=N bytes
// "z" of the Content-Type its label type names; Stat (unary, GET
// /v1/stats/{name}, of unknown idempotency too) answers its request.
func filesServer(t testing.TB) *kittest.Server {
	t.Helper()
	sd, err := filesService()
	if err != nil {
		t.Fatal(err)
	}
	download, upload, get, stat := sd.Methods().Get(0), sd.Methods().Get(1), sd.Methods().Get(2), sd.Methods().Get(3)
	// options are those of md's handler; a method without side effects
	// takes Connect GETs, as protoc-gen-connect-go's handlers do.
	options := func(srv *kit.Server, md protoreflect.MethodDescriptor) []connect.HandlerOption {
		opts := []connect.HandlerOption{
			connect.WithSchema(md),
			connect.WithRequestInitializer(func(_ connect.Spec, msg any) error {
				*msg.(*dynamicpb.Message) = *dynamicpb.NewMessage(md.Input())
				return nil
			}),
		}
		if md.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
			opts = append(opts, connect.WithIdempotency(connect.IdempotencyNoSideEffects))
		}
		return append(opts, srv.HandlerOptions()...)
	}
	// answer is the JSON of req, without its body, and the body's data.
	answer := func(req *dynamicpb.Message, data []byte) (*httpbody.HttpBody, error) {
		req.Clear(req.Descriptor().Fields().ByName("body"))
		j, err := protojson.Marshal(req)
		if err != nil {
			return nil, err
		}
		return &httpbody.HttpBody{ContentType: "application/json", Data: append(append(j, '\n'), data...)}, nil
	}
	return kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		mux := http.NewServeMux()
		mux.Handle("/"+string(sd.FullName())+"/Download", connect.NewServerStreamHandler("/"+string(sd.FullName())+"/Download",
			func(_ context.Context, req *connect.Request[dynamicpb.Message], stream *connect.ServerStream[httpbody.HttpBody]) error {
				labels := req.Msg.Get(req.Msg.Descriptor().Fields().ByName("labels")).Map()
				pad := protoreflect.ValueOfString("pad").MapKey()
				msg, err := answer(req.Msg, nil)
				if err != nil {
					return err
				}
				if err := stream.Send(msg); err != nil || !labels.Has(pad) {
					return err
				}
				n, err := strconv.Atoi(labels.Get(pad).String())
				if err != nil {
					return connect.NewError(connect.CodeInvalidArgument, err)
				}
				return stream.Send(&httpbody.HttpBody{ContentType: "application/json", Data: bytes.Repeat([]byte("z"), n)})
			}, options(srv, download)...))
		mux.Handle("/"+string(sd.FullName())+"/Upload", connect.NewClientStreamHandler("/"+string(sd.FullName())+"/Upload",
			func(_ context.Context, stream *connect.ClientStream[dynamicpb.Message]) (*connect.Response[httpbody.HttpBody], error) {
				var first *dynamicpb.Message
				var data []byte
				for stream.Receive() {
					if first == nil {
						first = proto.Clone(stream.Msg()).(*dynamicpb.Message)
					}
					b := stream.Msg().Get(stream.Msg().Descriptor().Fields().ByName("body")).Message()
					data = append(data, b.Get(b.Descriptor().Fields().ByName("data")).Bytes()...)
				}
				if err := stream.Err(); err != nil {
					return nil, err
				}
				msg, err := answer(first, data)
				if err != nil {
					return nil, err
				}
				return connect.NewResponse(msg), nil
			}, options(srv, upload)...))
		mux.Handle("/"+string(sd.FullName())+"/Get", connect.NewUnaryHandler("/"+string(sd.FullName())+"/Get",
			func(_ context.Context, req *connect.Request[dynamicpb.Message]) (*connect.Response[httpbody.HttpBody], error) {
				labels := req.Msg.Get(req.Msg.Descriptor().Fields().ByName("labels")).Map()
				n, err := strconv.Atoi(labels.Get(protoreflect.ValueOfString("pad").MapKey()).String())
				if err != nil {
					return nil, connect.NewError(connect.CodeInvalidArgument, err)
				}
				contentType := labels.Get(protoreflect.ValueOfString("type").MapKey()).String()
				return connect.NewResponse(&httpbody.HttpBody{ContentType: contentType, Data: bytes.Repeat([]byte("z"), n)}), nil
			}, options(srv, get)...))
		mux.Handle("/"+string(sd.FullName())+"/Stat", connect.NewUnaryHandler("/"+string(sd.FullName())+"/Stat",
			func(_ context.Context, req *connect.Request[dynamicpb.Message]) (*connect.Response[dynamicpb.Message], error) {
				return connect.NewResponse(req.Msg), nil
			}, options(srv, stat)...))
		for _, md := range []protoreflect.MethodDescriptor{sd.Methods().Get(4), sd.Methods().Get(5)} { // Put, Peek
			path := "/" + string(sd.FullName()) + "/" + string(md.Name())
			mux.Handle(path, connect.NewUnaryHandler(path,
				func(_ context.Context, req *connect.Request[dynamicpb.Message]) (*connect.Response[httpbody.HttpBody], error) {
					b := req.Msg.Get(req.Msg.Descriptor().Fields().ByName("body")).Message()
					msg, err := answer(req.Msg, b.Get(b.Descriptor().Fields().ByName("data")).Bytes())
					if err != nil {
						return nil, err
					}
					return connect.NewResponse(msg), nil
				}, options(srv, md)...))
		}
		srv.Mount("/"+string(sd.FullName())+"/", mux)
	})
}

// The query parameters kit sets in vanguard's place are set on the routes
// of streams too (a download and an upload of google.api.HttpBody), whose
// first request message, the one vanguard sets the query in, it sends in
// an envelope of the Connect streaming protocol: kit appended their
// encoding after the envelope, which connect read as the prefix of a
// second, malformed, message, failing the call.
func TestRESTQueryStreams(t *testing.T) {
	t.Parallel()
	s := filesServer(t)
	const query = "?labels[k]=v&times=2020-01-01T00:00:00Z"
	const set = `{"name":"a","labels":{"k":"v"},"times":["2020-01-01T00:00:00Z"]}`
	checkFileCalls(t, s, []fileCall{
		{http.MethodGet, "/v1/files/a" + query, "", set + "\n"},
		{http.MethodGet, "/v1/files/a", "", `{"name":"a"}` + "\n"},
		{http.MethodPost, "/v1/files/a:upload" + query, "file data", set + "\nfile data"},
	})
}

// A singular well-known type that kit sets in a stream's first message
// replaces the one vanguard set there, as on a unary route: on a download,
// ?mask=aB&mask=c_d is the mask "cD" (vanguard sets aB, a JSON name; kit
// c_d, a proto name), and an empty ?mask= after one clears it, where kit
// merged them, "aB,cD" and "aB". On an upload, whose first message kit
// rewrites too, the path variable, the map entry and the body's data stay
// (kit sets the whole query there, see TestRESTQueryUpload).
func TestRESTQueryStreamReplaces(t *testing.T) {
	t.Parallel()
	s := filesServer(t)
	checkFileCalls(t, s, []fileCall{
		{http.MethodGet, "/v1/files/a?mask=aB&mask=c_d", "", `{"name":"a","mask":"cD"}` + "\n"},
		{http.MethodGet, "/v1/files/a?mask=aB&mask=", "", `{"name":"a","mask":""}` + "\n"},
		{http.MethodPost, "/v1/files/a:upload?mask=c_d&mask=&labels[k]=v", "file data", `{"name":"a","mask":"","labels":{"k":"v"}}` + "\nfile data"},
	})
}

// fileCall is a REST call of [filesService] and its answer: the JSON of
// the request, a newline and the body's data.
type fileCall struct{ method, target, body, want string }

// checkFileCalls makes each of calls over HTTP/1.1 and h2c to s, with a
// text/plain body if it has one, and checks its answer.
func checkFileCalls(t *testing.T, s *kittest.Server, calls []fileCall) {
	t.Helper()
	checkFileCallsOf(t, s, "text/plain", calls)
}

// checkFileCallsOf is [checkFileCalls] with bodies of contentType.
func checkFileCallsOf(t *testing.T, s *kittest.Server, contentType string, calls []fileCall) {
	t.Helper()
	for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
		for _, tc := range calls {
			var header http.Header
			if tc.body != "" {
				header = http.Header{"Content-Type": {contentType}}
			}
			resp, body := restCall(t, client, tc.method, s.URL+tc.target, tc.body, header)
			gotJSON, gotData, _ := strings.Cut(body, "\n")
			wantJSON, wantData, _ := strings.Cut(tc.want, "\n")
			var got, w any
			if resp.StatusCode != http.StatusOK || gotData != wantData ||
				json.Unmarshal([]byte(gotJSON), &got) != nil || json.Unmarshal([]byte(wantJSON), &w) != nil || !reflect.DeepEqual(got, w) {
				t.Errorf("%s %s (%s) over %s = %d %q, want 200 %q", tc.method, tc.target, header.Get("Content-Type"), resp.Proto, resp.StatusCode, body, tc.want)
			}
		}
	}
}

// On the route of an upload of google.api.HttpBody, a client stream's
// (POST /v1/files/{name}:upload) or a unary call's (PUT /v1/blobs/{name}),
// every query parameter sets the request's field (a stream's in its first
// message), as on any other route: vanguard v0.4.0 clears the query before
// it decodes the message and, for a body that is not "application/…"
// (text/plain, image/png), set none of it, so ?mask=aB alone never reached
// the method; for one that is, it sets the query itself, and kit must not
// set it again. A parameter replaces the path's variable and the
// body's field, as vanguard sets the query after them; a name that ends
// in "." after a message is ignored, as vanguard ignores it, and a bad
// value or a name through a field that is no message is 400.
func TestRESTQueryUpload(t *testing.T) {
	t.Parallel()
	s := filesServer(t)
	checkFileCalls(t, s, []fileCall{
		{http.MethodPost, "/v1/files/a:upload?mask=aB", "file data", `{"name":"a","mask":"aB"}` + "\nfile data"},
		{http.MethodPost, "/v1/files/a:upload?mask=aB&mask=c_d", "file data", `{"name":"a","mask":"cD"}` + "\nfile data"},
		{http.MethodPost, "/v1/files/a:upload?name=b&mask=c_d&labels[k]=v&times=2020-01-01T00:00:00Z", "file data",
			`{"name":"b","mask":"cD","labels":{"k":"v"},"times":["2020-01-01T00:00:00Z"]}` + "\nfile data"},
		{http.MethodPost, "/v1/files/a:upload?mask=aB&body.=x&.x=1&unknown=1&%zz=1", "file data", `{"name":"a","mask":"aB"}` + "\nfile data"},
		{http.MethodPost, "/v1/files/a:upload?tags=x&tags=y", "file data", `{"name":"a","tags":["x","y"]}` + "\nfile data"},
		{http.MethodPut, "/v1/blobs/a?mask=aB&tags=x&tags=y", "file data", `{"name":"a","mask":"aB","tags":["x","y"]}` + "\nfile data"},
		{http.MethodPut, "/v1/blobs/a?name=b&mask=c_d&mask=&labels[k]=v", "file data", `{"name":"b","mask":"","labels":{"k":"v"}}` + "\nfile data"},
		// No body, no Content-Type: vanguard sets the query itself.
		{http.MethodPost, "/v1/files/a:upload?tags=x&tags=y&mask=aB", "", `{"name":"a","mask":"aB","tags":["x","y"]}` + "\n"},
	})
	// Vanguard sets the query of an upload of "application/" itself, and
	// kit none of it again (a list's elements twice), but for the
	// parameters it holds (times).
	for _, contentType := range []string{"image/png", "text/plain; charset=utf-8", "application/octet-stream", "application/json"} {
		const query, want = "?tags=x&tags=y&mask=aB&times=2020-01-01T00:00:00Z", `{"name":"a","mask":"aB","tags":["x","y"],"times":["2020-01-01T00:00:00Z"]}` + "\n{}"
		checkFileCallsOf(t, s, contentType, []fileCall{
			{http.MethodPost, "/v1/files/a:upload" + query, "{}", want},
			{http.MethodPut, "/v1/blobs/a" + query, "{}", want},
			// A method without side effects, called with a POST, which
			// vanguard calls with a Connect POST as it does any other (a
			// Connect GET only for a REST GET).
			{http.MethodPost, "/v1/peeks/a" + query, "{}", want},
		})
	}
	for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
		for _, target := range []string{"/v1/files/a:upload?mask=a!b", "/v1/files/a:upload?name.x=1"} {
			resp, body := restCall(t, client, http.MethodPost, s.URL+target, "file data", http.Header{"Content-Type": {"text/plain"}})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"code":3`) {
				t.Errorf("POST %s over %s = %d %q, want 400 InvalidArgument", target, resp.Proto, resp.StatusCode, body)
			}
		}
	}
}

// A query parameter that kit sets on an upload (of text/plain) means what
// vanguard makes of it (on one of application/octet-stream, whose query it
// sets itself): the same field's value, or 400 for both. Kit read an
// integer with protojson, which takes ?size=1e2 and ?size=1.0 (100, 1)
// and ?count=-0, where vanguard, as grpc-gateway, refuses them, and
// refused " 1" and "null", which vanguard reads as 1 and the zero.
func TestRESTQueryUploadReadsAsVanguard(t *testing.T) {
	t.Parallel()
	s := filesServer(t)
	values := []string{"1", "1e2", "1.0", "-0", "%201", "1%20", "null", "true", "1", "NaN", "-Infinity", "1e40",
		"9223372036854775807", "9223372036854775808", "4294967296", "-1", "0x10", "%221%22"}
	for c, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
		for _, name := range []string{"size", "count", "flag", "ratio"} {
			for _, v := range values {
				target := s.URL + "/v1/files/a:upload?" + name + "=" + v
				var answers [2]string
				for i, contentType := range []string{"text/plain", "application/octet-stream"} {
					resp, body := restCall(t, client, http.MethodPost, target, "data", http.Header{"Content-Type": {contentType}})
					answers[i] = strconv.Itoa(resp.StatusCode) + " " + body
					if resp.StatusCode == http.StatusBadRequest {
						answers[i] = "400" // the words differ: kit's name the form
					}
				}
				if answers[0] != answers[1] || !strings.HasPrefix(answers[0], "200") && answers[0] != "400" {
					t.Errorf("POST ?%s=%s over client %d (HTTP/1.1, h2c): text/plain (kit) %q, application/octet-stream (vanguard) %q", name, v, c, answers[0], answers[1])
				}
			}
		}
	}
}

// BenchmarkRESTUpload measures a REST upload of 4 MiB (less 64 bytes) of
// text/plain, one message, without a query, with a list parameter (whose
// encoding kit appends to the first message) and with a singular one
// (which has kit decode the first message and encode it again): compare
// B/op across them.
func BenchmarkRESTUpload(b *testing.B) {
	s := filesServer(b)
	data := strings.Repeat("x", 4<<20-64)
	for _, query := range []string{"", "?tags=x", "?mask=aB"} {
		b.Run("query="+query, func(b *testing.B) {
			client := s.HTTP1Client()
			b.ReportAllocs()
			for b.Loop() {
				req, err := http.NewRequest(http.MethodPost, s.URL+"/v1/files/a:upload"+query, strings.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "text/plain")
				resp, err := client.Do(req)
				drainOK(b, resp, err, query)
			}
		})
	}
}
