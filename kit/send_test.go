package kit_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// An HTTP/2 client that reads its socket, answers pings, but grants a
// stream no flow-control window would hold the handler inside Send: the
// stream is reset once a Send has waited the stall timeout.
func TestStalledSendResetsTheStream(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		kit.SetSendStall(s, 200*time.Millisecond)
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	})
	callWithoutWindow(t, srv, http.MethodPost, pingv1connect.PingServiceCountUpProcedure, "application/grpc", &pingv1.CountUpRequest{Number: 3})
}

// What a call writes after its handler's last Send, or instead of a Send,
// also waits on the client: a unary call's response, a client stream's
// response, a stream's end. A client that grants no window would
// hold the handler there, and the response's buffers with it, for as long
// as it answers pings: the stream is reset too.
func TestStalledResponseResetsTheStream(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 64<<10) // written inside the handler, past net/http's buffer
	tests := []struct {
		name, method, procedure, contentType string
		msg                                  proto.Message
		// callTimeout is also the time the body has to arrive: a large
		// one gets more, or on a loaded machine its read times out and
		// the call answers a small error, which net/http writes after the
		// handler has returned, when nothing guards it any more (README,
		// "a Connect unary response under 4KiB").
		callTimeout time.Duration
	}{
		{name: "gRPC unary", procedure: pingv1connect.PingServicePingProcedure, contentType: "application/grpc", msg: &pingv1.PingRequest{Number: 1}},
		{name: "gRPC-Web unary", procedure: pingv1connect.PingServicePingProcedure, contentType: "application/grpc-web+proto", msg: &pingv1.PingRequest{Number: 1}},
		{name: "Connect unary, large response", procedure: pingv1connect.PingServicePingProcedure, contentType: "application/proto", msg: &pingv1.PingRequest{Text: big}, callTimeout: 2 * time.Second},
		{name: "Connect GET, large response", method: http.MethodGet, procedure: pingv1connect.PingServicePingProcedure, msg: &pingv1.PingRequest{Text: big[:32<<10]}},
		{name: "Connect stream's end", procedure: pingv1connect.PingServiceCountUpProcedure, contentType: "application/connect+proto", msg: &pingv1.CountUpRequest{}},
		{name: "gRPC-Web stream's end", procedure: pingv1connect.PingServiceCountUpProcedure, contentType: "application/grpc-web+proto", msg: &pingv1.CountUpRequest{}},
		{name: "gRPC client stream's response", procedure: pingv1connect.PingServiceSumProcedure, contentType: "application/grpc", msg: &pingv1.SumRequest{Number: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			callTimeout := cmp.Or(tc.callTimeout, 100*time.Millisecond)
			srv := kittest.NewServer(t, kit.Config{CallTimeout: callTimeout}, func(s *kit.Server) {
				kit.SetSendStall(s, 200*time.Millisecond)
				s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
			})
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			callWithoutWindow(t, srv, method, tc.procedure, tc.contentType, tc.msg)
		})
	}
}

// Over HTTP/1.1 a client that stops reading holds the handler in its
// write once the socket's buffers are full: the connection's write
// deadline, the call's deadline and the send stall, ends it. The request
// is small, so that it arrives within the call's deadline however loaded
// the machine: an 8MiB request that Ping echoed, as before, outlasted a 2s
// deadline in a loaded go test -race ./kit/, the server cut its body and
// the client's write failed (broken pipe).
func TestUnreadHTTP1ResponseEndsTheCall(t *testing.T) {
	t.Parallel()
	const size = 8 << 20 // more than the server's socket buffer takes (4MiB at most on Linux)
	returned := make(chan struct{})
	srv := kittest.NewServer(t, kit.Config{CallTimeout: 2 * time.Second, MaxResponseBytes: 2 * size}, func(s *kit.Server) {
		kit.SetSendStall(s, 200*time.Millisecond)
		path, h := pingv1connect.NewPingServiceHandler(bigPing{size: size}, s.HandlerOptions()...)
		s.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r) // connect writes the response before returning
			close(returned)
		}))
	}, kit.WithInterceptorOptions(interceptors.WithoutValidation())) // text is at most 1MiB
	conn := srv.Dial(t)
	if err := conn.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil { // and no autotuning
		t.Fatal(err)
	}
	body, _ := proto.Marshal(&pingv1.PingRequest{Number: 1})
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: kit\r\nContent-Type: application/proto\r\nContent-Length: %d\r\n\r\n%s", pingPath, len(body), body); err != nil {
		t.Fatal(err)
	}
	select { // the response is never read
	case <-returned:
	case <-time.After(time.Minute):
		t.Fatal("the handler is still writing to a client that reads nothing")
	}
}

// bigPing answers every Ping with size bytes of text.
type bigPing struct {
	pingv1connect.UnimplementedPingServiceHandler
	size int
}

func (p bigPing) Ping(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Text: strings.Repeat("x", p.size)}), nil
}

// callWithoutWindow calls procedure over HTTP/2 with msg as its only
// message (in the URL of a Connect GET), granting the server no
// flow-control window, and returns once the server resets the stream; it
// fails if the server sends DATA, or gives up the connection instead.
func callWithoutWindow(t *testing.T, srv *kittest.Server, method, procedure, contentType string, msg proto.Message) {
	t.Helper()
	conn := srv.Dial(t)
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	// A window of 0: the server can send headers, and no DATA.
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	body, _ := proto.Marshal(msg)
	fields := [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "kit"}}
	if method == http.MethodGet {
		fields = append(fields, [2]string{":path", procedure + "?connect=v1&encoding=proto&base64=1&message=" + base64.RawURLEncoding.EncodeToString(body)})
		body = nil
	} else {
		fields = append(fields, [2]string{":path", procedure}, [2]string{"content-type", contentType}, [2]string{"te", "trailers"})
	}
	if contentType != "application/proto" && body != nil { // enveloped
		body = append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(body))), body...)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	// In frames of at most the default largest size.
	frag := block.Bytes()
	n := min(len(frag), 16<<10)
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag[:n], EndHeaders: n == len(frag), EndStream: body == nil}); err != nil {
		t.Fatal(err)
	}
	for frag = frag[n:]; len(frag) > 0; frag = frag[n:] {
		n = min(len(frag), 16<<10)
		if err := fr.WriteContinuation(1, n == len(frag), frag[:n]); err != nil {
			t.Fatal(err)
		}
	}
	for len(body) > 0 {
		n := min(len(body), 16<<10) // the default largest frame
		if err := fr.WriteData(1, n == len(body), body[:n]); err != nil {
			t.Fatal(err)
		}
		body = body[n:]
	}
	start := time.Now()
	for {
		f, err := nextFrame(fr)
		if err != nil {
			t.Fatalf("after %v: %v, want RST_STREAM on stream 1", time.Since(start), err)
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			t.Fatalf("DATA on a stream with no window: %v", f)
		case *http2.RSTStreamFrame:
			if f.StreamID != 1 {
				t.Fatalf("RST_STREAM on stream %d", f.StreamID)
			}
			return // the handler was released
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v: the whole connection ended, not the stream", f.ErrCode)
		}
	}
}

// A handler given the server's options twice runs the stream guards twice:
// both are stopped before the request's handler returns, or a stray one
// would set a deadline on a finished request (a nil dereference in a timer
// goroutine under HTTP/2, which ends the process; the connection's next
// request under HTTP/1.1).
func TestStreamGuardsOfAChainGivenTwiceAreReleased(t *testing.T) {
	t.Parallel()
	const stall = 50 * time.Millisecond
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		kit.SetSendStall(s, stall)
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, append(s.HandlerOptions(), s.HandlerOptions()...)...))
	})
	for _, p := range srv.Protocols() {
		stream, err := newPingClient(srv, p.Client, p.Options...).CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 2}))
		if err != nil {
			t.Fatal(err)
		}
		for stream.Receive() {
		}
		if err := stream.Close(); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
	time.Sleep(4 * stall) // any guard left armed fires
	for _, p := range srv.Protocols() {
		if _, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
			t.Errorf("%s: Ping after the streams: %v", p.Name, err)
		}
	}
}

// lateSendPing's CountUp returns at once, leaving a goroutine that sends
// on the stream once the call's context is done, which net/http does
// once the call's handlers have all returned, and hands the Send's error
// to sent.
type lateSendPing struct {
	pingServer
	sent chan error
}

func (p *lateSendPing) CountUp(ctx context.Context, _ *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	go func() {
		<-ctx.Done()
		p.sent <- stream.Send(&pingv1.CountUpResponse{Number: 1})
	}()
	return nil
}

// TestLateSendFailsInEveryProtocol: a Send that a handler's goroutine
// makes after the handler returned fails, in every protocol, and the
// server keeps serving, where over gRPC and gRPC-Web it panicked in
// net/http's writer, in that goroutine: the process crashed.
func TestLateSendFailsInEveryProtocol(t *testing.T) {
	t.Parallel()
	svc := &lateSendPing{sent: make(chan error, 1)}
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
	})
	protocols := append(srv.Protocols(), kittest.Protocol{Name: "grpc/http1", Client: srv.HTTP1Client(), Options: []connect.ClientOption{connect.WithGRPC()}})
	for _, p := range protocols {
		client := pingv1connect.NewPingServiceClient(p.Client, srv.URL, p.Options...)
		stream, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		for stream.Receive() {
		}
		if err := stream.Err(); err != nil {
			t.Errorf("%s: the stream ended with %v, want no error", p.Name, err)
		}
		_ = stream.Close()
		if err := <-svc.sent; err == nil {
			t.Errorf("%s: a Send after the handler returned succeeded, want an error", p.Name)
		}
	}
}
