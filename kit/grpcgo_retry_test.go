package kit_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

const grpcFail = "/connectkit.ping.v1.PingService/Fail"

// retryPolicy is a grpc-go service config that retries every
// PingService call failing with UNAVAILABLE, 3 attempts in all.
const retryPolicy = `{"methodConfig": [{"name": [{"service": "connectkit.ping.v1.PingService"}],
  "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.001s", "maxBackoff": "0.01s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// unavailablePing is a PingService whose Fail and CountUp count their
// calls and fail with Unavailable; CountUp after setting the response
// header "X-Meta" when withHeader is set, and the trailer "Connection:
// close" when closeTrailer is.
type unavailablePing struct {
	pingServer
	withHeader, closeTrailer bool
	calls                    atomic.Int64
}

func (f *unavailablePing) Fail(_ context.Context, _ *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	f.calls.Add(1)
	err := connect.NewError(connect.CodeUnavailable, errors.New("try again"))
	err.Meta().Set("X-Why", "busy")
	return nil, err
}

func (f *unavailablePing) CountUp(_ context.Context, _ *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	f.calls.Add(1)
	if f.withHeader {
		stream.ResponseHeader().Set("X-Meta", "set")
	}
	if f.closeTrailer {
		stream.ResponseTrailer().Set("Connection", "close")
	}
	return connect.NewError(connect.CodeUnavailable, errors.New("try again"))
}

// TestGRPCGoRetryPolicyRetriesUnavailable: a grpc-go client whose service
// config has a retryPolicy retries a kit server's Unavailable, unary or
// stream, as it retries a grpc-go server's: kit answers an error before
// any message as a Trailers-Only response, the only one gRPC clients
// retry. The status, its message and the error's metadata arrive whole.
func TestGRPCGoRetryPolicyRetriesUnavailable(t *testing.T) {
	t.Parallel()
	unary := func(ctx context.Context, conn *grpc.ClientConn, trailer *metadata.MD) error {
		return conn.Invoke(ctx, grpcFail, &pingv1.FailRequest{Code: int32(connect.CodeUnavailable)}, &pingv1.FailResponse{}, grpc.Trailer(trailer))
	}
	for _, tc := range []struct {
		name string
		cfg  kit.Config
		call func(ctx context.Context, conn *grpc.ClientConn, trailer *metadata.MD) error
	}{
		{name: "unary", call: unary},
		// No deadline, so no body timer, whose allocation the call's
		// writer shares otherwise.
		{name: "unary without call timeouts", cfg: kit.Config{CallTimeout: kit.NoTimeout, MaxCallTimeout: kit.NoTimeout}, call: unary},
		{name: "server stream", call: func(ctx context.Context, conn *grpc.ClientConn, trailer *metadata.MD) error {
			stream, err := countUpOnce(ctx, conn)
			if stream != nil {
				*trailer = stream.Trailer()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := &unavailablePing{}
			conn := unavailableConn(t, tc.cfg, svc, grpc.WithDefaultServiceConfig(retryPolicy))
			var trailer metadata.MD
			err := tc.call(t.Context(), conn, &trailer)
			// grpc-go says in the message that it retried.
			if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.HasSuffix(st.Message(), "try again") {
				t.Fatalf("err = %v, want Unavailable: …try again", err)
			}
			if got := svc.calls.Load(); got != 3 {
				t.Errorf("the handler ran %d times, want 3 (the retry policy's attempts)", got)
			}
			if tc.name != "server stream" && trailer.Get("x-why") == nil {
				t.Errorf("trailer = %v, want the error's x-why", trailer)
			}
		})
	}
}

// TestGRPCGoRetryPolicyWithCORS: the header fields that kit sets on
// every response before the handler runs (rs/cors's "Vary: Origin", with
// KIT_CORS_ALLOWED_ORIGINS; its Access-Control-* for a request with an
// allowed Origin) are no metadata of the handler's: a call that fails
// before its first message is still one Trailers-Only answer, which a
// grpc-go client retries.
func TestGRPCGoRetryPolicyWithCORS(t *testing.T) {
	t.Parallel()
	for _, origin := range []string{"", "https://app.example.com"} {
		t.Run("origin="+origin, func(t *testing.T) {
			t.Parallel()
			svc := &unavailablePing{}
			conn := unavailableConn(t, kit.Config{CORSAllowedOrigins: []string{"https://app.example.com"}}, svc,
				grpc.WithDefaultServiceConfig(retryPolicy))
			ctx := t.Context()
			if origin != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "origin", origin)
			}
			var trailer metadata.MD
			err := conn.Invoke(ctx, grpcFail, &pingv1.FailRequest{Code: int32(connect.CodeUnavailable)}, &pingv1.FailResponse{}, grpc.Trailer(&trailer))
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("err = %v, want Unavailable", err)
			}
			if got := svc.calls.Load(); got != 3 {
				t.Errorf("the handler ran %d times, want 3 (the retry policy's attempts)", got)
			}
			// A Trailers-Only answer's fields are all trailers to grpc-go.
			if origin != "" && trailer.Get("access-control-allow-origin") == nil {
				t.Errorf("trailer %v, want CORS's access-control-allow-origin", trailer)
			}
		})
	}
}

// TestGRPCGoRetryPolicyAtMaxConnectionAge: on a connection past
// KIT_MAX_CONNECTION_AGE, every response carries the server's
// "Connection: close" (net/http's GOAWAY), which is no metadata of the
// handler's either: a call that fails before its first message is still
// Trailers-Only, and a grpc-go client retries it (on a new connection).
func TestGRPCGoRetryPolicyAtMaxConnectionAge(t *testing.T) {
	t.Parallel()
	svc := &unavailablePing{}
	conn := unavailableConn(t, kit.Config{MaxConnectionAge: time.Nanosecond}, svc, grpc.WithDefaultServiceConfig(retryPolicy))
	err := conn.Invoke(t.Context(), grpcFail, &pingv1.FailRequest{Code: int32(connect.CodeUnavailable)}, &pingv1.FailResponse{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if got := svc.calls.Load(); got != 3 {
		t.Errorf("the handler ran %d times, want 3 (the retry policy's attempts)", got)
	}
}

// TestGRPCGoRetryPolicyCommittedByHeader: a stream whose handler set
// response metadata before it failed sends that header first, as a
// grpc-go server does, and the client, which sees the call committed,
// retries it no more than it would a grpc-go server's.
func TestGRPCGoRetryPolicyCommittedByHeader(t *testing.T) {
	t.Parallel()
	svc := &unavailablePing{withHeader: true}
	conn := unavailableConn(t, kit.Config{}, svc, grpc.WithDefaultServiceConfig(retryPolicy))
	stream, err := countUpOnce(t.Context(), conn)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	header, _ := stream.Header()
	if got := header.Get("x-meta"); len(got) != 1 || got[0] != "set" {
		t.Errorf("header x-meta = %q, want [set]", got)
	}
	if got := svc.calls.Load(); got != 1 {
		t.Errorf("the handler ran %d times, want 1", got)
	}
}

// TestGRPCGoTrailersOnlyKeepsConnectionFieldsOut: a trailer that net/http
// refuses as a trailer (Connection) stays out of a Trailers-Only answer's
// header too, where "Connection: close" would have closed the client's
// connection, and every call on it, with a GOAWAY.
func TestGRPCGoTrailersOnlyKeepsConnectionFieldsOut(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	conn := unavailableConn(t, kit.Config{}, &unavailablePing{closeTrailer: true}, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}))
	for range 3 {
		stream, err := countUpOnce(t.Context(), conn)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("err = %v, want Unavailable", err)
		}
		if got := stream.Trailer().Get("connection"); got != nil {
			t.Errorf("trailer connection = %q, want none", got)
		}
	}
	if got := dials.Load(); got != 1 {
		t.Errorf("the client dialed %d times for 3 calls, want once", got)
	}
}

// unavailableConn runs a kit server of cfg with svc mounted and returns a grpc-go
// client of it.
func unavailableConn(tb testing.TB, cfg kit.Config, svc *unavailablePing, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	srv := kittest.NewServer(tb, cfg, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
	})
	return grpcConnTo(tb, []net.Addr{srv.Addr()}, opts...)
}

// countUpOnce calls CountUp for one message over conn, and returns the
// stream, if it opened, and the error of its first receive.
func countUpOnce(ctx context.Context, conn *grpc.ClientConn) (grpc.ClientStream, error) {
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, grpcCountUp)
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(&pingv1.CountUpRequest{Number: 1}); err != nil {
		return stream, err
	}
	if err := stream.CloseSend(); err != nil {
		return stream, err
	}
	return stream, stream.RecvMsg(&pingv1.CountUpResponse{})
}

// emptyPing's CountUp sends no message, sets the trailer "X-Done", and
// ends without error.
type emptyPing struct{ pingServer }

func (*emptyPing) CountUp(_ context.Context, _ *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	stream.ResponseTrailer().Set("X-Done", "yes")
	return nil
}

// TestTrailersOnlyOKReadByClients: a stream that ends with no message and
// no error is a Trailers-Only answer with grpc-status 0, as on a grpc-go
// server, which grpc-go's client and connect-go's gRPC client read as a
// stream that ended well, its trailer with it.
func TestTrailersOnlyOKReadByClients(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&emptyPing{}, s.HandlerOptions()...))
	})
	stream, err := grpcConnTo(t, []net.Addr{srv.Addr()}).NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, grpcCountUp)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&pingv1.CountUpRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	if err := stream.RecvMsg(&pingv1.CountUpResponse{}); !errors.Is(err, io.EOF) {
		t.Errorf("grpc-go: RecvMsg = %v, want io.EOF", err)
	}
	if got := stream.Trailer().Get("x-done"); len(got) != 1 || got[0] != "yes" {
		t.Errorf("grpc-go: trailer %v, want x-done: yes", stream.Trailer())
	}
	client := pingv1connect.NewPingServiceClient(srv.HTTP2Client(), srv.URL, connect.WithGRPC())
	up, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	if up.Receive() || up.Err() != nil {
		t.Errorf("connect-go: Receive, Err = %v, %v; want false, nil", up.Msg(), up.Err())
	}
	if got := up.ResponseTrailer().Get("X-Done"); got != "yes" {
		t.Errorf("connect-go: trailer %v, want X-Done: yes", up.ResponseTrailer())
	}
	// The answer is one frame: net/http's client shows its status in the
	// header.
	req, err := http.NewRequest(http.MethodPost, srv.URL+grpcCountUp, strings.NewReader("\x00\x00\x00\x00\x00"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	res, err := srv.HTTP2Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.Header.Get("Grpc-Status") != "0" || res.Header.Get("X-Done") != "yes" || len(res.Trailer) != 0 {
		t.Errorf("header %v, trailer %v; want grpc-status 0 and x-done in the header, no trailer", res.Header, res.Trailer)
	}
}

// TestGRPCGoRetryPolicyRetriesAuthUnavailable: WithAuth's refusal of a
// gRPC call, before its handler runs, is Trailers-Only too, so that a
// grpc-go client retries an Unavailable of its func (a token service
// down) as it retries a handler's; it was header and trailers, connect's
// ErrorWriter's, which commits the call. A challenge (WWW-Authenticate,
// a header field) still goes in the header, before the trailers.
//
// The client waits between sending each attempt's header and its message
// (see [slowSend]): the refusal, which needs the header alone, waits for
// the message all the same, so that the last attempt ends with the
// status, where grpc-go v1.85 returned "max retries exhausted: failed
// after 3 attempts: EOF" when the refusal came first (9 runs of 30 on
// main without the wait, load 2-5; every run with it).
func TestGRPCGoRetryPolicyRetriesAuthUnavailable(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	}, kit.WithAuth(func(_ context.Context, r *http.Request) (any, error) {
		calls.Add(1)
		if r.Header.Get("X-Challenge") != "" {
			err := connect.NewError(connect.CodeUnauthenticated, errors.New("no token"))
			err.Meta().Set("WWW-Authenticate", "Bearer")
			return nil, err
		}
		err := connect.NewError(connect.CodeUnavailable, errors.New("token service down"))
		err.Meta().Set("X-Why", "busy")
		return nil, err
	}))
	conn := grpcConnTo(t, []net.Addr{srv.Addr()}, grpc.WithDefaultServiceConfig(retryPolicy), grpc.WithStatsHandler(slowSend{}))
	unary := func(ctx context.Context, header, trailer *metadata.MD) error {
		return conn.Invoke(ctx, grpcFail, &pingv1.FailRequest{}, &pingv1.FailResponse{}, grpc.Header(header), grpc.Trailer(trailer))
	}
	stream := func(ctx context.Context, header, trailer *metadata.MD) error {
		s, err := countUpOnce(ctx, conn)
		if s != nil {
			*header, _ = s.Header()
			*trailer = s.Trailer()
		}
		return err
	}
	for name, call := range map[string]func(context.Context, *metadata.MD, *metadata.MD) error{"unary": unary, "server stream": stream} {
		before := calls.Load()
		var header, trailer metadata.MD
		err := call(t.Context(), &header, &trailer)
		if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.HasSuffix(st.Message(), "token service down") {
			t.Fatalf("%s: err = %v, want Unavailable: …token service down", name, err)
		}
		if got := calls.Load() - before; got != 3 {
			t.Errorf("%s: WithAuth's func ran %d times, want 3 (the retry policy's attempts)", name, got)
		}
		if trailer.Get("x-why") == nil || header.Get("x-why") != nil {
			t.Errorf("%s: header %v, trailer %v; want the error's x-why in the trailer", name, header, trailer)
		}
		before = calls.Load()
		ctx := metadata.AppendToOutgoingContext(t.Context(), "x-challenge", "1")
		err = call(ctx, &header, &trailer)
		if status.Code(err) != codes.Unauthenticated || calls.Load()-before != 1 {
			t.Errorf("%s with a challenge: err = %v after %d calls of the func, want Unauthenticated after 1", name, err, calls.Load()-before)
		}
		if got := header.Get("www-authenticate"); len(got) != 1 || got[0] != "Bearer" {
			t.Errorf("%s with a challenge: header %v, want www-authenticate: Bearer", name, header)
		}
	}
}

// TestGRPCGoRetryPolicyRetriesRefusedStream: a server stream that an
// interceptor refuses before its message is read (KIT_RATE_LIMIT's
// ResourceExhausted here; KIT_MAX_INFLIGHT's Unavailable alike) is
// retried by a grpc-go client whose retryPolicy lists the code, and ends
// with the status: the refusal waits for the client's message (see
// [slowSend]), where grpc-go v1.85 returned "max retries exhausted: failed
// after 3 attempts: EOF" (every run). A unary call's message is read
// before its interceptors run.
func TestGRPCGoRetryPolicyRetriesRefusedStream(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{RateLimit: 0.001, RateLimitBurst: 1}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	})
	policy := strings.Replace(retryPolicy, `"UNAVAILABLE"`, `"RESOURCE_EXHAUSTED"`, 1)
	conn := grpcConnTo(t, []net.Addr{srv.Addr()}, grpc.WithDefaultServiceConfig(policy), grpc.WithStatsHandler(slowSend{}))
	if _, err := countUpOnce(t.Context(), conn); err != nil { // the burst's one call
		t.Fatalf("first stream: %v", err)
	}
	_, err := countUpOnce(t.Context(), conn)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "rate limit exceeded") {
		t.Errorf("err = %v, want ResourceExhausted: …rate limit exceeded…", err)
	}
}

// slowSend is a grpc-go stats handler that holds each attempt of a call
// for 50ms once its header is on its way, before its message is written,
// as a loaded client may be held: a server that answers a call from its
// header alone answers before the message is written.
type slowSend struct{}

func (slowSend) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (slowSend) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.OutHeader); ok {
		time.Sleep(50 * time.Millisecond)
	}
}

func (slowSend) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (slowSend) HandleConn(context.Context, stats.ConnStats) {}

// TestRefusalOfWithheldMessage: a gRPC call over HTTP/2 whose client sends
// its header and never its message is refused all the same, with its
// status, whether WithAuth refuses it (a unary call, a server stream) or
// an interceptor does (a server stream over KIT_RATE_LIMIT). The refusal
// waits for the message's first byte (see [slowSend]) a short while only:
// it waited as long as the body might take, KIT_CALL_TIMEOUT (30s), and
// with the call timeouts off, as here, until the client gave up, holding
// the stream and its goroutine meanwhile.
func TestRefusalOfWithheldMessage(t *testing.T) {
	t.Parallel()
	mount := func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	}
	cfg := kit.Config{CallTimeout: kit.NoTimeout, MaxCallTimeout: kit.NoTimeout}
	authed := kittest.NewServer(t, cfg, mount, kit.WithAuth(func(context.Context, *http.Request) (any, error) {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no token"))
	}))
	cfg.RateLimit, cfg.RateLimitBurst = 0.001, 1
	limited := kittest.NewServer(t, cfg, mount)
	spend, err := pingv1connect.NewPingServiceClient(limited.HTTP1Client(), limited.URL).CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
	if err != nil {
		t.Fatal(err)
	}
	for spend.Receive() {
	}
	if err := spend.Err(); err != nil {
		t.Fatalf("the call that spends the burst: %v", err)
	}
	for _, tc := range []struct {
		name string
		srv  *kittest.Server
		path string
		code connect.Code
	}{
		{"WithAuth unary", authed, grpcFail, connect.CodeUnauthenticated},
		{"WithAuth server stream", authed, grpcCountUp, connect.CodeUnauthenticated},
		{"rate-limited server stream", limited, grpcCountUp, connect.CodeResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Far longer than the wait, on a loaded machine: a hang ends here.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			body, withheld := io.Pipe()
			defer withheld.Close()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, tc.srv.URL+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			resp, err := tc.srv.HTTP2Client().Do(req)
			if err != nil {
				t.Fatalf("no refusal: %v", err)
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("reading the refusal: %v", err)
			}
			if got, want := resp.Header.Get("Grpc-Status"), strconv.Itoa(int(tc.code)); got != want {
				t.Errorf("grpc-status %q (header %v, trailer %v), want %s in a Trailers-Only answer", got, resp.Header, resp.Trailer, want)
			}
		})
	}
}
