package batchconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// holdAt is the CountUp request number that makes pingService stop after
// the first response until release is closed.
const holdAt = 77

type pingService struct {
	pingv1connect.UnimplementedPingServiceHandler
	held    chan struct{} // closed when a held CountUp has sent its first response
	release chan struct{} // closed by the test to let it finish
}

func (*pingService) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: req.Msg.GetText()}), nil
}

func (s *pingService) CountUp(ctx context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	for i := int64(1); i <= req.Msg.GetNumber(); i++ {
		if err := stream.Send(&pingv1.CountUpResponse{Number: i}); err != nil {
			return err
		}
		if i == 1 && req.Msg.GetNumber() == holdAt {
			close(s.held)
			select {
			case <-s.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

func (*pingService) CumSum(_ context.Context, stream *connect.BidiStream[pingv1.CumSumRequest, pingv1.CumSumResponse]) error {
	var sum int64
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		sum += req.GetNumber()
		if err := stream.Send(&pingv1.CumSumResponse{Sum: sum}); err != nil {
			return err
		}
	}
}

// testServer is a net/http server speaking HTTP/1.1 and h2c behind a
// batchconn listener, serving pingService.
type testServer struct {
	URL string
	srv *http.Server
	svc *pingService

	mu    sync.Mutex
	conns []*conn
}

func newTestServer(tb testing.TB, tweak func(*http.Server)) *testServer {
	tb.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := NewListener(inner, Config{})
	if err != nil {
		tb.Fatal(err)
	}
	ts := &testServer{
		URL: "http://" + ln.Addr().String(),
		svc: &pingService{held: make(chan struct{}), release: make(chan struct{})},
	}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(ts.svc))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	ts.srv = &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ts.mu.Lock()
			ts.conns = append(ts.conns, c.(*conn))
			ts.mu.Unlock()
			return ctx
		},
	}
	if tweak != nil {
		tweak(ts.srv)
	}
	served := make(chan error, 1)
	go func() { served <- ts.srv.Serve(ln) }()
	tb.Cleanup(func() {
		ts.srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("Serve = %v", err)
		}
	})
	return ts
}

// modes returns the mode of every connection accepted so far.
func (ts *testServer) modes() []int32 {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	m := make([]int32, len(ts.conns))
	for i, c := range ts.conns {
		m[i] = c.mode.Load()
	}
	return m
}

// requireModes fails unless some connection has mode want and none was
// decided otherwise (a transport may dial a spare connection that it never
// uses: that one is still sniffing).
func (ts *testServer) requireModes(tb testing.TB, want int32) {
	tb.Helper()
	modes := ts.modes()
	seen := false
	for _, m := range modes {
		seen = seen || m == want
		if m != want && m != modeSniffing {
			tb.Fatalf("connection modes %v, want %d", modes, want)
		}
	}
	if !seen {
		tb.Fatalf("connection modes %v, want one %d", modes, want)
	}
}

// client returns a PingService client using only the given protocol.
func (ts *testServer) client(tb testing.TB, h2c bool, opts ...connect.ClientOption) pingv1connect.PingServiceClient {
	tb.Helper()
	var protocols http.Protocols
	if h2c {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
	}
	tr := &http.Transport{Protocols: &protocols}
	tb.Cleanup(tr.CloseIdleConnections)
	return pingv1connect.NewPingServiceClient(&http.Client{Transport: tr}, ts.URL, opts...)
}

func TestEndToEndGRPCUnaryOverH2C(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	client := ts.client(t, true, connect.WithGRPC())
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				n := int64(g*1000 + i)
				res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: n, Text: fmt.Sprint(n)}))
				if err != nil {
					t.Errorf("Ping(%d): %v", n, err)
					return
				}
				if res.Msg.GetNumber() != n || res.Msg.GetText() != fmt.Sprint(n) {
					t.Errorf("Ping(%d) = %v", n, res.Msg)
					return
				}
			}
		}()
	}
	wg.Wait()
	ts.requireModes(t, modeBatched)
}

func TestEndToEndGRPCStreamsOverH2C(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	client := ts.client(t, true, connect.WithGRPC())
	ctx := t.Context()

	stream, err := client.CountUp(ctx, connect.NewRequest(&pingv1.CountUpRequest{Number: 1000}))
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for stream.Receive() {
		want++
		if got := stream.Msg().GetNumber(); got != want {
			t.Fatalf("CountUp sent %d, want %d", got, want)
		}
	}
	if err := stream.Err(); err != nil || want != 1000 {
		t.Fatalf("CountUp ended after %d with %v", want, err)
	}

	bidi := client.CumSum(ctx)
	var sum int64
	for i := int64(1); i <= 200; i++ {
		if err := bidi.Send(&pingv1.CumSumRequest{Number: i}); err != nil {
			t.Fatal(err)
		}
		res, err := bidi.Receive()
		if err != nil {
			t.Fatal(err)
		}
		sum += i
		if res.GetSum() != sum {
			t.Fatalf("CumSum = %d, want %d", res.GetSum(), sum)
		}
	}
	if err := bidi.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("CumSum end = %v, want io.EOF", err)
	}
	if err := bidi.CloseResponse(); err != nil {
		t.Fatal(err)
	}
	ts.requireModes(t, modeBatched)
}

func TestEndToEndConnectJSONOverHTTP1(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	client := ts.client(t, false, connect.WithProtoJSON())
	for i := range int64(20) {
		res, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: i}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetNumber() != i {
			t.Fatalf("Ping(%d) = %v", i, res.Msg)
		}
	}
	ts.requireModes(t, modePlain)
}

func TestEndToEndShutdownDrainsH2CStream(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	client := ts.client(t, true, connect.WithGRPC())
	stream, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: holdAt}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("first message: %v", stream.Err())
	}
	<-ts.svc.held

	shutdown := make(chan error, 1)
	go func() { shutdown <- ts.srv.Shutdown(context.Background()) }()
	// Shutdown has begun once new connections are refused.
	addr := ts.URL[len("http://"):]
	eventually(t, "new connections are refused", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(ts.svc.release)

	got := int64(1)
	for stream.Receive() {
		got++
		if stream.Msg().GetNumber() != got {
			t.Fatalf("CountUp sent %d, want %d", stream.Msg().GetNumber(), got)
		}
	}
	if err := stream.Err(); err != nil || got != holdAt {
		t.Fatalf("stream ended after %d messages with %v, want %d and nil", got, err, holdAt)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	ts.requireModes(t, modeBatched)
}

func TestEndToEndReadHeaderTimeoutClosesSilentConnection(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(s *http.Server) { s.ReadHeaderTimeout = 50 * time.Millisecond })
	c, err := net.Dial("tcp", ts.URL[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(waitFor))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read on a silent connection = %d, %v; want the server to close it", n, err)
	}
}

func TestEndToEndIdleTimeoutClosesH2CConnection(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond })
	c, err := net.Dial("tcp", ts.URL[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The preface and an empty SETTINGS frame, then silence.
	if _, err := io.WriteString(c, h2Preface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(waitFor))
	got, err := io.ReadAll(c) // SETTINGS, SETTINGS ack, GOAWAY, then EOF
	if err != nil {
		t.Fatalf("ReadAll = %v after %d bytes; want the server to close the idle connection", err, len(got))
	}
	if len(got) < 9 || got[3] != 0x4 {
		t.Fatalf("server sent %x, want frames starting with SETTINGS", got)
	}
	ts.requireModes(t, modeBatched)
}
