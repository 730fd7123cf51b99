package kit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	_ "google.golang.org/grpc/health" // client-side health checking
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// The procedures of the test PingService, as grpc-go names them.
const (
	grpcPing    = "/connectkit.ping.v1.PingService/Ping"
	grpcCountUp = "/connectkit.ping.v1.PingService/CountUp"
)

// metaPing is a PingService whose Ping echoes the binary metadata
// "x-data-bin" in a response header and a trailer, or, when its request's
// text is "details", fails with a detail and that metadata; whose CountUp
// sends one message and then waits for its context, or, asked for 0
// messages, sends until Send fails; and which hands either error to ended.
type metaPing struct {
	pingServer
	ended chan error
}

func (m *metaPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if req.Msg.GetText() == "details" {
		err := connect.NewError(connect.CodeFailedPrecondition, errors.New("not now"))
		detail, derr := connect.NewErrorDetail(&pingv1.PingResponse{Number: 7, Text: "why"})
		if derr != nil {
			return nil, derr
		}
		err.AddDetail(detail)
		for _, v := range req.Header().Values("X-Data-Bin") {
			err.Meta().Add("X-Data-Bin", v)
		}
		return nil, err
	}
	res, err := m.pingServer.Ping(ctx, req)
	if err != nil {
		return nil, err
	}
	for _, v := range req.Header().Values("X-Data-Bin") {
		data, err := connect.DecodeBinaryHeader(v)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		res.Header().Add("X-Data-Bin", connect.EncodeBinaryHeader(data))
		res.Trailer().Add("X-Data-Bin", connect.EncodeBinaryHeader(data))
	}
	return res, nil
}

func (m *metaPing) CountUp(ctx context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	if req.Msg.GetNumber() == 0 { // send until Send fails, ignoring ctx
		for {
			if err := stream.Send(&pingv1.CountUpResponse{Number: 1}); err != nil {
				m.ended <- err
				return err
			}
		}
	}
	if err := stream.Send(&pingv1.CountUpResponse{Number: 1}); err != nil {
		return err
	}
	<-ctx.Done()
	m.ended <- ctx.Err()
	return ctx.Err()
}

func TestGRPCGoBinaryMetadataRoundTrips(t *testing.T) {
	t.Parallel()
	srv := kittestMeta(t, kit.Config{}, &metaPing{})
	data := []byte{0, 1, 0xff, '\n', ':', 0x80, 'a'} // not UTF-8, with NUL and newline
	ctx := metadata.AppendToOutgoingContext(t.Context(), "x-data-bin", string(data))
	var header, trailer metadata.MD
	var res pingv1.PingResponse
	err := grpcConn(t, srv.Addr().String()).Invoke(ctx, grpcPing, &pingv1.PingRequest{Number: 1}, &res,
		grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if got := header.Get("x-data-bin"); len(got) != 1 || got[0] != string(data) {
		t.Errorf("header x-data-bin = %q, want %q", got, data)
	}
	if got := trailer.Get("x-data-bin"); len(got) != 1 || got[0] != string(data) {
		t.Errorf("trailer x-data-bin = %q, want %q", got, data)
	}
}

func TestGRPCGoSeesErrorDetails(t *testing.T) {
	t.Parallel()
	srv := kittestMeta(t, kit.Config{}, &metaPing{})
	data := []byte{0, 0xff, '\n'}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "x-data-bin", string(data))
	var trailer metadata.MD
	var res pingv1.PingResponse
	err := grpcConn(t, srv.Addr().String()).Invoke(ctx, grpcPing, &pingv1.PingRequest{Text: "details"}, &res, grpc.Trailer(&trailer))
	if got := trailer.Get("x-data-bin"); len(got) != 1 || got[0] != string(data) {
		t.Errorf("error's x-data-bin = %q, want %q", got, data)
	}
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "not now" {
		t.Fatalf("status = %v, %q; want FailedPrecondition, \"not now\"", st.Code(), st.Message())
	}
	details := st.Details()
	if len(details) != 1 {
		t.Fatalf("details = %v, want one", details)
	}
	if d, ok := details[0].(*pingv1.PingResponse); !ok || d.GetNumber() != 7 || d.GetText() != "why" {
		t.Errorf("detail = %#v, want PingResponse{7, why}", details[0])
	}
}

// kittestMeta runs a kit server with svc mounted.
func kittestMeta(tb testing.TB, cfg kit.Config, svc *metaPing, opts ...kit.Option) *kittest.Server {
	tb.Helper()
	return kittest.NewServer(tb, cfg, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(svc, srv.HandlerOptions()...))
	}, opts...)
}

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func TestGRPCGoGzipBothWays(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{MaxRequestBytes: 256 << 10}, nil)
	var read atomic.Int64
	conn, err := grpc.NewClient(srv.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return countingConn{c, &read}, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	text := strings.Repeat("compressible ", 64<<10/13)
	var res pingv1.PingResponse
	if err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Text: text}, &res, grpc.UseCompressor(gzip.Name)); err != nil {
		t.Fatal(err)
	}
	if res.GetText() != text {
		t.Fatalf("response text of %d bytes, want the %d sent", len(res.GetText()), len(text))
	}
	if n := read.Load(); n > int64(len(text))/4 {
		t.Errorf("read %d bytes for a %d-byte response: not compressed", n, len(text))
	}

	// A gzipped request that inflates past KIT_MAX_REQUEST_BYTES.
	big := strings.Repeat("a", 512<<10)
	err = conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Text: big}, &res, grpc.UseCompressor(gzip.Name))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted {
		t.Errorf("gzipped request over the limit: %v, want ResourceExhausted", err)
	}
}

func TestGRPCGoMessagesAtTheLimits(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	srv := newPingServer(t, kit.Config{MaxRequestBytes: 2 * limit, MaxResponseBytes: limit}, nil)
	conn := grpcConn(t, srv.Addr().String())
	// textOf returns a request whose encoding is n bytes long.
	textOf := func(n int) *pingv1.PingRequest {
		req := &pingv1.PingRequest{Text: strings.Repeat("x", n-4)} // tag and 3-byte length
		if s := proto.Size(req); s != n {
			t.Fatalf("request of %d bytes, want %d", s, n)
		}
		return req
	}
	var res pingv1.PingResponse
	if err := conn.Invoke(t.Context(), grpcPing, textOf(limit), &res); err != nil {
		t.Errorf("response of exactly KIT_MAX_RESPONSE_BYTES: %v", err)
	}
	err := conn.Invoke(t.Context(), grpcPing, textOf(limit+1), &res)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "exceeds") {
		t.Errorf("response one byte over: %v, want ResourceExhausted saying what exceeds", err)
	}
	if err := conn.Invoke(t.Context(), grpcPing, textOf(2*limit), &res); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("request of exactly KIT_MAX_REQUEST_BYTES: %v, want the response's ResourceExhausted", err)
	}
	err = conn.Invoke(t.Context(), grpcPing, textOf(2*limit+1), &res)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "larger than") {
		t.Errorf("request one byte over: %v, want ResourceExhausted saying it is too large", err)
	}
	// The connection still serves.
	if err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 1}, &res); err != nil {
		t.Errorf("Ping after the limits: %v", err)
	}
}

func TestGRPCGoCancelMidStream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		number int64
	}{
		{"handler waits on its context", 1},
		{"handler sends until Send fails", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testGRPCGoCancelMidStream(t, tc.number)
		})
	}
}

func testGRPCGoCancelMidStream(t *testing.T, number int64) {
	var logs syncBuffer
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	svc := &metaPing{ended: make(chan error, 1)}
	srv := kittestMeta(t, kit.Config{}, svc, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := grpcConn(t, srv.Addr().String()).NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, grpcCountUp)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&pingv1.CountUpRequest{Number: number}); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var msg pingv1.CountUpResponse
	if err := stream.RecvMsg(&msg); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-svc.ended; !errors.Is(err, context.Canceled) && connect.CodeOf(err) != connect.CodeCanceled {
		t.Errorf("handler's context or Send ended with %v, want Canceled", err)
	}
	if err := srv.Stop(); err != nil { // the call is logged and counted by then
		t.Fatal(err)
	}
	lines := logLines(t, &logs, "rpc")
	if len(lines) != 1 || lines[0]["code"] != "canceled" {
		t.Errorf("log lines %v, want one whose code is canceled", lines)
	}
	labels := map[string]string{"grpc_code": "Canceled", "grpc_method": "CountUp", "grpc_type": "server_stream"}
	if n := counterValue(t, srv.Registry(), "grpc_server_handled_total", labels); n != 1 {
		t.Errorf("grpc_server_handled_total%v = %v, want 1", labels, n)
	}
	var statuses []string
	for _, s := range spans.GetSpans() {
		for _, a := range s.Attributes {
			if a.Key == "rpc.response.status_code" {
				statuses = append(statuses, a.Value.AsString())
			}
		}
	}
	if len(statuses) != 1 || statuses[0] != "CANCELED" {
		t.Errorf("spans' rpc.response.status_code = %v, want one CANCELED", statuses)
	}
}

func TestGRPCGoPastMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	for _, cfg := range []kit.Config{{MaxConcurrentStreams: 2}, {MaxConcurrentStreams: 2, NoFrameBatching: true}} {
		srv := newPingServer(t, cfg, nil)
		conn := grpcConn(t, srv.Addr().String())
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 100 {
			wg.Go(func() {
				var res pingv1.PingResponse
				if err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: int64(i)}, &res); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("frame batching %v: %v", !cfg.NoFrameBatching, err)
		}
	}
}

func TestGRPCGoReconnectsAcrossGracefulShutdown(t *testing.T) {
	t.Parallel()
	svc := blockingPing()
	old := newPingServer(t, kit.Config{}, svc)
	next := newPingServer(t, kit.Config{}, nil)
	conn := grpcConnTo(t, []net.Addr{old.Addr(), next.Addr()})

	inFlight := make(chan error, 1)
	go func() {
		var res pingv1.PingResponse
		inFlight <- conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 1}, &res)
	}()
	<-svc.entered
	stopped := make(chan error, 1)
	go func() { stopped <- old.Stop() }()
	// The GOAWAY takes the connection out of READY.
	for conn.GetState().String() == "READY" {
		conn.WaitForStateChange(t.Context(), conn.GetState())
	}
	var p peer.Peer
	var res pingv1.PingResponse
	if err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 2}, &res, grpc.Peer(&p)); err != nil {
		t.Errorf("call after the GOAWAY: %v", err)
	} else if p.Addr.String() != next.Addr().String() {
		t.Errorf("call after the GOAWAY went to %v, want the other server %v", p.Addr, next.Addr())
	}
	close(svc.block)
	if err := <-inFlight; err != nil {
		t.Errorf("call in flight at the GOAWAY: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestGRPCGoDeadlines(t *testing.T) {
	t.Parallel()
	const maxCallTimeout = 90 * time.Second
	srv := newPingServer(t, kit.Config{MaxCallTimeout: maxCallTimeout}, nil)
	conn := grpcConn(t, srv.Addr().String())
	// The handler's deadline is its client's, or the cap, give or take
	// the time the call takes to arrive (the Grpc-Timeout is relative),
	// rather than KIT_CALL_TIMEOUT's 30s.
	const slack = 5 * time.Second
	for _, tc := range []struct {
		timeout time.Duration
		header  string // the Grpc-Timeout grpc-go sends, about
	}{
		{20 * time.Second, "20000000u"},
		{time.Hour, "3600000m"},                // capped
		{1000 * time.Hour, "3600000S"},         // capped
		{5 * 365 * 24 * time.Hour, "2628000M"}, // capped
	} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			defer cancel()
			want, _ := ctx.Deadline()
			var header metadata.MD
			var res pingv1.PingResponse
			if err := conn.Invoke(ctx, grpcPing, &pingv1.PingRequest{}, &res, grpc.Header(&header)); err != nil {
				t.Fatal(err)
			}
			if capped := time.Now().Add(maxCallTimeout); capped.Before(want) {
				want = capped
			}
			got, err := time.Parse(time.RFC3339Nano, strings.Join(header.Get("deadline"), ""))
			if err != nil || got.After(want.Add(slack)) || got.Before(want.Add(-slack)) {
				t.Errorf("Grpc-Timeout %s: handler's deadline %v (%v), want about %v", tc.header, got, err, want)
			}
		})
	}
}

func TestGRPCGoWaitForReadyOutlastsARestart(t *testing.T) {
	t.Parallel()
	old := newPingServer(t, kit.Config{}, nil)
	addr := old.Addr().String()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Quick retries while no server listens; MinConnectTimeout set, or
		// grpc-go gives each attempt the backoff's delay (10ms) to connect
		// and read the server's preface, and on a loaded machine closes the
		// first connection before kit's SETTINGS arrive ("error reading
		// server preface: use of closed network connection").
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 50 * time.Millisecond},
			MinConnectTimeout: 10 * time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var res pingv1.PingResponse
	if err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 1}, &res); err != nil {
		t.Fatal(err)
	}
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	// Without the server, a call that does not wait fails ...
	if err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 2}, &res); status.Code(err) != codes.Unavailable {
		t.Errorf("call while no server listens: %v, want Unavailable", err)
	}
	// ... and one that waits is served by the server that comes back on the
	// same address.
	waited := make(chan error, 1)
	go func() {
		waited <- conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 3}, &res, grpc.WaitForReady(true))
	}()
	srv, err := kit.New(kit.Config{Addr: addr, AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	ctx, stop := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	if err := <-waited; err != nil || res.GetNumber() != 3 {
		t.Errorf("call that waited for the restart = %v, %v", &res, err)
	}
	stop()
	if err := <-ran; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestGRPCGoHealthCheckingLeavesADrainingServer(t *testing.T) {
	t.Parallel()
	old := newPingServer(t, kit.Config{DrainDelay: 3 * time.Second}, nil) // time for the client to leave it on a loaded machine
	next := newPingServer(t, kit.Config{}, nil)
	// Round robin with client-side health checking, as a mesh or a
	// grpc-go client with a service config balances.
	conn := grpcConnTo(t, []net.Addr{old.Addr(), next.Addr()},
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}],
			"healthCheckConfig": {"serviceName": "connectkit.ping.v1.PingService"}}`))
	stopped := make(chan error, 1)
	go func() { stopped <- old.Stop() }()
	// Once the draining server's Watch says NOT_SERVING, every call goes
	// to the other one, while the draining one still listens: round robin
	// alone would keep alternating until the GOAWAY.
	for inARow := 0; inARow < 10; {
		var p peer.Peer
		var res pingv1.PingResponse
		if err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{Number: 1}, &res, grpc.Peer(&p)); err != nil {
			t.Fatal(err)
		}
		inARow++
		if p.Addr.String() != next.Addr().String() {
			inARow = 0
		}
	}
	if c, err := net.Dial("tcp", old.Addr().String()); err != nil {
		t.Errorf("the draining server stopped listening before the client left it: %v", err)
	} else {
		_ = c.Close()
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// grpcConnTo returns a grpc-go client of the servers at addrs, in that
// order (pick first, unless opts choose another balancer).
func grpcConnTo(tb testing.TB, addrs []net.Addr, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	r := manual.NewBuilderWithScheme("kittest")
	var state resolver.State
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a.String()})
	}
	r.InitialState(state)
	conn, err := grpc.NewClient(r.Scheme()+":///ping", append([]grpc.DialOption{grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// stuckPing's Ping, asked for the text "stuck", waits for release and
// ignores its context, as a handler blocked in a call that takes none.
// Each such call sends on entered first.
type stuckPing struct {
	pingServer
	entered, release chan struct{}
}

func (s *stuckPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if req.Msg.GetText() == "stuck" {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.pingServer.Ping(ctx, req)
}

// What README says of handlers that ignore their context: net/http queues
// the calls that follow them on their connection, then closes it.
func TestGRPCGoCallsBehindStuckHandlers(t *testing.T) {
	t.Parallel()
	const limit = 2
	var logs syncBuffer
	svc := &stuckPing{entered: make(chan struct{}), release: make(chan struct{})}
	srv := kittest.NewServer(t, kit.Config{MaxConcurrentStreams: limit}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	t.Cleanup(func() { close(svc.release) }) // before the server stops
	conn := grpcConn(t, srv.Addr().String())
	var res pingv1.PingResponse
	for range limit { // each client gives up once its handler runs
		ctx, cancel := context.WithCancel(t.Context())
		go func() { <-svc.entered; cancel() }()
		if err := conn.Invoke(ctx, grpcPing, &pingv1.PingRequest{Text: "stuck"}, &res); status.Code(err) != codes.Canceled {
			t.Fatalf("stuck call: %v, want Canceled", err)
		}
	}
	call := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		return conn.Invoke(ctx, grpcPing, &pingv1.PingRequest{}, &res)
	}
	failed := 0
	for call() != nil {
		if failed++; failed > 20*limit {
			t.Fatalf("%d calls behind the stuck handlers failed, and the connection stays", failed)
		}
	}
	if failed < 4*limit {
		t.Errorf("%d calls behind the stuck handlers failed, want at least %d", failed, 4*limit)
	}
	if !strings.Contains(logs.String(), "ENHANCE_YOUR_CALM") {
		t.Error("the connection's close is not logged")
	}
}

// What README says of KIT_MAX_CONCURRENT_STREAMS: grpc-go queues the calls
// past it behind a connection's open streams, and opens no other
// connection.
func TestGRPCGoQueuesCallsBehindOpenStreams(t *testing.T) {
	t.Parallel()
	const limit = 2
	svc := &metaPing{ended: make(chan error, limit)}
	srv := kittestMeta(t, kit.Config{MaxConcurrentStreams: limit}, svc)
	conn := grpcConn(t, srv.Addr().String())
	cancels := make([]context.CancelFunc, limit)
	for i := range limit { // streams that stay open, as watches do
		ctx, cancel := context.WithCancel(t.Context())
		cancels[i] = cancel
		stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, grpcCountUp)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.SendMsg(&pingv1.CountUpRequest{Number: 1}); err != nil {
			t.Fatal(err)
		}
		var msg pingv1.CountUpResponse
		if err := stream.RecvMsg(&msg); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	var res pingv1.PingResponse
	if err := conn.Invoke(ctx, grpcPing, &pingv1.PingRequest{}, &res); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("call behind %d open streams: %v, want DeadlineExceeded", limit, err)
	}
	cancels[0]()
	if err := conn.Invoke(t.Context(), grpcPing, &pingv1.PingRequest{}, &res); err != nil {
		t.Errorf("call once a stream ended: %v", err)
	}
	cancels[1]()
}

// grpcurl ends reflection's stream, and grpc-go's client-side health
// checking a Watch, by cancelling it: quiet procedures, whose ordinary end
// that is, log it at debug as they do their successes.
func TestGRPCGoCancelledReflectionAndWatchAreQuiet(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv := newPingServer(t, kit.Config{}, nil,
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	conn := grpcConn(t, srv.Addr().String())

	ctx, cancel := context.WithCancel(t.Context())
	listServices(t, ctx, conn)
	cancel()

	ctx, cancel = context.WithCancel(t.Context())
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()

	// The shutdown would end a Watch still open with OK.
	for !strings.Contains(logs.String(), `"procedure":"/grpc.health.v1.Health/Watch"`) {
		time.Sleep(time.Millisecond)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	levels := map[string]any{}
	for _, line := range logLines(t, &logs, "rpc") {
		if line["code"] == "canceled" {
			levels[line["procedure"].(string)] = line["level"]
		}
	}
	for _, procedure := range []string{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.health.v1.Health/Watch"} {
		if levels[procedure] != "DEBUG" {
			t.Errorf("%s cancelled: logged at %v, want DEBUG", procedure, levels[procedure])
		}
	}
}

// A reflection stream whose caller's deadline passes while it waits for
// the client's next question (buf curl --timeout, grpcurl -max-time) ends
// as routinely as one the client cancels: at debug too, not as a server
// error. The client here sends its Grpc-Timeout and keeps its stream open,
// so that the server's deadline, not a reset of the client's, ends it.
func TestGRPCGoReflectionPastItsDeadlineIsQuiet(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv := newPingServer(t, kit.Config{}, nil,
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	question, err := proto.Marshal(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
	if err != nil {
		t.Fatal(err)
	}
	body, send := io.Pipe()
	defer send.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		"http://"+srv.Addr().String()+"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Grpc-Timeout", "100m")
	go func() {
		frame := append([]byte{0, 0, 0, 0, byte(len(question))}, question...)
		_, _ = send.Write(frame) // and no more, nor the end of the stream
	}()
	resp, err := srv.HTTP2Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "4" {
		t.Fatalf("grpc-status %q, want 4 (DeadlineExceeded)", got)
	}
	line := rpcLineAtStop(t, srv, &logs, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
	if line["code"] != "deadline_exceeded" || line["level"] != "DEBUG" {
		t.Errorf("reflection stream past its deadline logged %v at %v, want deadline_exceeded at DEBUG", line["code"], line["level"])
	}
}

// A health Watch that the server's own KIT_STREAM_TIMEOUT cuts is the
// server's doing, and grpc-go's client-side health checking, which sets no
// deadline, takes the DeadlineExceeded for the backend failing (it goes
// TRANSIENT_FAILURE until its next Watch gets SERVING): logged at error, as
// for any other stream, though health is quiet.
func TestGRPCGoWatchCutByStreamTimeoutIsAnError(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv := newPingServer(t, kit.Config{StreamTimeout: 50 * time.Millisecond}, nil,
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	conn := grpcConn(t, srv.Addr().String())
	watch, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Recv past KIT_STREAM_TIMEOUT: %v, want DeadlineExceeded", err)
	}
	line := rpcLineAtStop(t, srv, &logs, "/grpc.health.v1.Health/Watch")
	if line["code"] != "deadline_exceeded" || line["level"] != "ERROR" {
		t.Errorf("Watch cut by the stream timeout logged %v at %v, want deadline_exceeded at ERROR", line["code"], line["level"])
	}
}

// rpcLineAtStop stops srv and returns the first rpc line in logs of
// procedure.
func rpcLineAtStop(t *testing.T, srv *kittest.Server, logs *syncBuffer, procedure string) map[string]any {
	t.Helper()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, line := range logLines(t, logs, "rpc") {
		if line["procedure"] == procedure {
			return line
		}
	}
	t.Fatalf("no rpc line of %s:\n%s", procedure, logs.String())
	return nil
}

// listServices opens a reflection stream on conn, as grpcurl does, and asks
// it the services, once; the stream stays open for the caller.
func listServices(tb testing.TB, ctx context.Context, conn *grpc.ClientConn) reflectionv1.ServerReflection_ServerReflectionInfoClient {
	tb.Helper()
	reflection, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	err = reflection.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := reflection.Recv(); err != nil {
		tb.Fatal(err)
	}
	return reflection
}
