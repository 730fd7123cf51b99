package kit_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/connectkit/connectkit/kit"
)

// A REST response of a stream (a google.api.HttpBody download, the answer
// to an upload) or of a unary google.api.HttpBody (an image, an archive,
// which vanguard gzipped again) is sent uncompressed, whatever the client
// accepts, and says so: vanguard named the gzip of the handler's stream as
// its Content-Encoding and wrote a message under 1 KiB, which connect
// sends uncompressed, as it was, so that Go's client failed ("gzip:
// invalid header"). A unary route's other answers are gzipped for a client
// that accepts it, from 1 KiB, and list Accept-Encoding in Vary. Each is
// read by Go's client with its transparent gzip, by one that asks for gzip
// itself and inflates what says gzip, and by one that asks for identity,
// over HTTP/1.1 and h2c; an upload may be sent gzipped.
func TestRESTCompressedResponses(t *testing.T) {
	t.Parallel()
	files := filesServer(t)
	ping := newPingServer(t, kit.Config{}, nil)
	big, small := strings.Repeat("x", 2000), strings.Repeat("y", 3000)
	for _, tc := range []struct {
		name, method, target, body, want string
		gzipBody                         bool // the request body is sent gzipped
		gzipped                          bool // the answer to a client that accepts gzip is gzipped
		contentType                      string
	}{
		{name: "small download", method: http.MethodGet, target: "/v1/files/a", want: `{"name":"a"}` + "\n"},
		{name: "large download", method: http.MethodGet, target: "/v1/files/" + big, want: `{"name":"` + big + `"}` + "\n"},
		{name: "small then large download", method: http.MethodGet, target: "/v1/files/a?labels[pad]=3000",
			want: `{"name":"a","labels":{"pad":"3000"}}` + "\n" + strings.Repeat("z", 3000)},
		{name: "small upload", method: http.MethodPost, target: "/v1/files/a:upload", body: "data", want: `{"name":"a"}` + "\ndata"},
		{name: "large gzipped upload", method: http.MethodPost, target: "/v1/files/a:upload", body: small, gzipBody: true,
			want: `{"name":"a"}` + "\n" + small},
		{name: "small unary", method: http.MethodGet, target: "/v1/ping/7?text=hi", want: `"text":"hi"`},
		{name: "large unary", method: http.MethodGet, target: "/v1/ping/7?text=" + big, want: `"text":"` + big + `"`, gzipped: true},
		{name: "large unary of a method that Connect calls by POST", method: http.MethodGet, target: "/v1/stats/" + big,
			want: `{"name":"` + big + `"`, gzipped: true},
		{name: "large unary HttpBody of an image", method: http.MethodGet, target: "/v1/blobs/a?labels[pad]=3000&labels[type]=image/png",
			want: strings.Repeat("z", 3000), contentType: "image/png"},
		{name: "large unary HttpBody of a gzip", method: http.MethodGet, target: "/v1/blobs/a?labels[pad]=3000&labels[type]=application/gzip",
			want: strings.Repeat("z", 3000), contentType: "application/gzip"},
		{name: "large unary HttpBody of a CSV", method: http.MethodGet, target: "/v1/blobs/a?labels[pad]=3000&labels[type]=text/csv",
			want: strings.Repeat("z", 3000), contentType: "text/csv"},
	} {
		s := files
		if strings.HasPrefix(tc.target, "/v1/ping") {
			s = ping
		}
		for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
			for _, accept := range []string{"", "gzip", "identity"} {
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
					if tc.gzipBody {
						body = strings.NewReader(gzipped(tc.body))
					}
				}
				req, err := http.NewRequestWithContext(context.Background(), tc.method, s.URL+tc.target, body)
				if err != nil {
					t.Fatal(err)
				}
				if tc.body != "" {
					req.Header.Set("Content-Type", "text/plain")
				}
				if tc.gzipBody {
					req.Header.Set("Content-Encoding", "gzip")
				}
				if accept != "" {
					req.Header.Set("Accept-Encoding", accept)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				encoding := resp.Header.Get("Content-Encoding")
				if resp.Uncompressed {
					encoding = "gzip" // Go's client inflated it and dropped the header
				}
				if err == nil && accept != "" && encoding == "gzip" {
					got, err = inflate(got)
				}
				wantEncoding := ""
				if tc.gzipped && accept != "identity" {
					wantEncoding = "gzip"
				}
				// protojson may space its JSON; no name or data here has a space.
				text := strings.ReplaceAll(string(got), " ", "")
				whole := strings.HasPrefix(tc.target, "/v1/files") || strings.HasPrefix(tc.target, "/v1/blobs")
				if err != nil || resp.StatusCode != http.StatusOK || encoding != wantEncoding ||
					!strings.Contains(text, tc.want) || whole && text != tc.want {
					t.Errorf("%s: %s %.40s over %s, Accept-Encoding %q = %d, Content-Encoding %q, %.80q, %v; want 200, Content-Encoding %q, %.80q",
						tc.name, tc.method, tc.target, resp.Proto, accept, resp.StatusCode, encoding, got, err, wantEncoding, tc.want)
				}
				if tc.contentType != "" && resp.Header.Get("Content-Type") != tc.contentType {
					t.Errorf("%s: Content-Type %q, want %q", tc.name, resp.Header.Get("Content-Type"), tc.contentType)
				}
				// A response that may be gzipped says that it varies with
				// Accept-Encoding, once, so that no cache gives it to a
				// client that sent another.
				if vary := varies(resp.Header); tc.gzipped && vary != 1 {
					t.Errorf("%s: Vary %q lists Accept-Encoding %d times, want once", tc.name, resp.Header.Values("Vary"), vary)
				}
			}
		}
	}
}

// varies counts Accept-Encoding in h's Vary.
func varies(h http.Header) int {
	n := 0
	for _, v := range h.Values("Vary") {
		for _, name := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(name), "Accept-Encoding") {
				n++
			}
		}
	}
	return n
}

// inflate returns b inflated by gzip.
func inflate(b []byte) ([]byte, error) {
	z, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(z)
}

// The Files service's methods, called in every protocol with gzip sent and
// accepted, still answer right: only their REST routes lose gzip.
func TestRESTStreamsOtherProtocolsCompressed(t *testing.T) {
	t.Parallel()
	s := filesServer(t)
	sd, err := filesService()
	if err != nil {
		t.Fatal(err)
	}
	download, upload := sd.Methods().Get(0), sd.Methods().Get(1)
	request := func(md protoreflect.MethodDescriptor, name, data string) *dynamicpb.Message {
		m := dynamicpb.NewMessage(md.Input())
		m.Set(md.Input().Fields().ByName("name"), protoreflect.ValueOfString(name))
		body := dynamicpb.NewMessage(md.Input().Fields().ByName("body").Message())
		body.Set(body.Descriptor().Fields().ByName("data"), protoreflect.ValueOfBytes([]byte(data)))
		m.Set(md.Input().Fields().ByName("body"), protoreflect.ValueOfMessage(body))
		return m
	}
	big := strings.Repeat("x", 3000)
	for _, p := range s.Protocols() {
		opts := append([]connect.ClientOption{connect.WithSendGzip()}, p.Options...)
		opts = append(opts, s.ClientOptions()...)
		dl := connect.NewClient[dynamicpb.Message, httpbody.HttpBody](p.Client, s.URL+"/"+string(sd.FullName())+"/Download",
			append(opts, connect.WithSchema(download))...)
		for _, name := range []string{"a", big} {
			stream, err := dl.CallServerStream(context.Background(), connect.NewRequest(request(download, name, "")))
			if err != nil {
				t.Fatalf("%s: Download: %v", p.Name, err)
			}
			var got []byte
			for stream.Receive() {
				got = append(got, stream.Msg().GetData()...)
			}
			if err := stream.Err(); err != nil || !strings.Contains(string(got), name) {
				t.Errorf("%s: Download(%.10s) = %.40q, %v", p.Name, name, got, err)
			}
			_ = stream.Close()
		}
		up := connect.NewClient[dynamicpb.Message, httpbody.HttpBody](p.Client, s.URL+"/"+string(sd.FullName())+"/Upload",
			append(opts, connect.WithSchema(upload))...)
		stream := up.CallClientStream(context.Background())
		for _, data := range []string{"small", big} {
			if err := stream.Send(request(upload, "a", data)); err != nil {
				t.Fatalf("%s: Upload: %v", p.Name, err)
			}
		}
		resp, err := stream.CloseAndReceive()
		if err != nil || !strings.HasSuffix(string(resp.Msg.GetData()), "\nsmall"+big) {
			t.Errorf("%s: Upload = %v, %v", p.Name, resp, err)
		}
	}
}
