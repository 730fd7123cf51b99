package kit_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// serveAt serves h at addr (a loopback address, "127.0.0.1:0" for a new
// one) with a net/http server that speaks HTTP/1.x, and h2c too when h2c
// is set, counting the "PRI *" requests its handler gets in pri; it
// returns the server's address and a function that stops it.
func serveAt(t *testing.T, addr string, h2c bool, h http.Handler, pri *atomic.Int32) (string, func()) {
	t.Helper()
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(h2c)
	return serveProtocols(t, addr, protocols, h, pri)
}

// serveProtocols is serveAt with the server's protocols given; its error
// log (a handler's panic) is discarded.
func serveProtocols(t *testing.T, addr string, protocols http.Protocols, h http.Handler, pri *atomic.Int32) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Protocols: &protocols, ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PRI" {
			pri.Add(1)
			return
		}
		h.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), func() { _ = srv.Close() }
}

// grpcGoHealth runs a grpc-go server, which speaks HTTP/2 only, with the
// health service, at addr ("127.0.0.1:0" for a new one), and returns its
// address.
func grpcGoHealth(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// connectHealth is a health service's Check made with connect, which an
// HTTP/1.1-only net/http server serves in gRPC too; it counts its calls.
func connectHealth(calls *atomic.Int32) http.Handler {
	return connect.NewUnaryHandler("/grpc.health.v1.Health/Check",
		func(context.Context, *connect.Request[healthpb.HealthCheckRequest]) (*connect.Response[healthpb.HealthCheckResponse], error) {
			calls.Add(1)
			return connect.NewResponse(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}), nil
		})
}

// healthCheck calls the gRPC health Check at url with client, in gRPC.
func healthCheck(t *testing.T, client *http.Client, url string) error {
	t.Helper()
	check := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](client, url+"/grpc.health.v1.Health/Check", connect.WithGRPC())
	_, err := check.CallUnary(t.Context(), connect.NewRequest(&healthpb.HealthCheckRequest{}))
	return err
}

// cumSum sums 1, 2 and 3 with a bidirectional stream, sent again while it
// fails without having reached a handler (interceptors.ErrNotSent), up to
// three times in all.
func cumSum(t *testing.T, ping pingv1connect.PingServiceClient) error {
	t.Helper()
	var err error
	for range 3 {
		if err = cumSumOnce(t.Context(), ping); !errors.Is(err, interceptors.ErrNotSent) {
			return err
		}
	}
	return err
}

func cumSumOnce(ctx context.Context, ping pingv1connect.PingServiceClient) error {
	stream := ping.CumSum(ctx)
	defer func() { _ = stream.CloseResponse() }()
	var sum int64
	for i := int64(1); i <= 3; i++ {
		if err := stream.Send(&pingv1.CumSumRequest{Number: i}); err != nil {
			_, recvErr := stream.Receive() // the stream's error
			return errors.Join(err, recvErr)
		}
		res, err := stream.Receive()
		if err != nil {
			return err
		}
		sum = res.GetSum()
	}
	if err := stream.CloseRequest(); err != nil {
		return err
	}
	if sum != 6 {
		return errors.New("CumSum of 1, 2, 3 gave a wrong sum")
	}
	return nil
}

// TestHTTPClientHTTP1AndH2CBehindOneBalancer calls an address behind which
// an L4 balancer sends its connections in turn to an HTTP/1.1-only server
// and to one that speaks HTTP/2 (during a rollout). The first call's h2c
// connection reaches the HTTP/1.1 server, which marks the address: yet a
// bidirectional stream, which needs HTTP/2, still tries h2c, finds the
// HTTP/2 server, and works, after which the address's calls go over HTTP/2;
// and gRPC calls to a grpc-go server, which speaks HTTP/2 alone, all
// succeed. They failed while one HTTP/1.x answer sent every call over
// HTTP/1.1: the stream ("bidi streams require at least HTTP/2"), the gRPC
// calls on the grpc-go server (a SETTINGS frame for an HTTP/1.1 answer).
func TestHTTPClientHTTP1AndH2CBehindOneBalancer(t *testing.T) {
	t.Parallel()
	t.Run("kit server", func(t *testing.T) {
		t.Parallel()
		var tl tally
		var pri atomic.Int32
		mux := http.NewServeMux()
		path, h := pingv1connect.NewPingServiceHandler(&pingServer{})
		mux.Handle(path, tl.tag("h1", h))
		h1, _ := serveAt(t, "127.0.0.1:0", false, mux, &pri)
		h2 := pingBackend(t, &tl, &pingServer{})
		front := newRoundRobinFront(t, h1, h2.Addr().String())
		caller := kittest.NewServer(t, kit.Config{}, nil)
		ping := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://"+front.ln.Addr().String(), caller.ClientOptions()...)

		if _, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
			t.Fatalf("first Ping: %v", err)
		}
		if pri.Load() != 1 {
			t.Fatalf("the first Ping's h2c connection reached the HTTP/1.1 server %d times; want once (the balancer's turns)", pri.Load())
		}
		tl.take()
		if err := cumSum(t, ping); err != nil {
			t.Fatalf("CumSum on the address an HTTP/1.1 server marked: %v", err)
		}
		for range 4 {
			if _, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatalf("Ping after CumSum: %v", err)
			}
		}
		if calls, http1 := tl.take(); calls["h1"] != 0 || calls[h2.Addr().String()] != 5 || http1 != 0 {
			t.Errorf("after the first Ping, the servers got %v calls, %d over HTTP/1; want CumSum and 4 Pings over HTTP/2 on the h2c one", calls, http1)
		}
	})
	t.Run("grpc-go server", func(t *testing.T) {
		t.Parallel()
		var pri, h1Calls atomic.Int32
		h1, _ := serveAt(t, "127.0.0.1:0", false, connectHealth(&h1Calls), &pri)
		front := newRoundRobinFront(t, h1, grpcGoHealth(t, "127.0.0.1:0"))
		client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
		for i := range 5 {
			if err := healthCheck(t, client, "http://"+front.ln.Addr().String()); err != nil {
				t.Fatalf("gRPC health Check %d: %v", i, err)
			}
		}
		if pri.Load() != 1 || h1Calls.Load() != 0 {
			t.Errorf("the HTTP/1.1 server got %d prefaces and %d Checks; want the first connection's preface alone", pri.Load(), h1Calls.Load())
		}
	})
}

// TestHTTPClientFindsHTTP2AtAnHTTP1Address calls an address where an
// HTTP/1.1-only server is, then one that speaks HTTP/2 in its place. The
// first server gets the h2c preface of the first call alone, however many
// calls follow. A net/http server that speaks h2c and HTTP/1.1 gets the
// Connect calls over HTTP/1.1 until a gRPC call, which probes h2c, finds
// it speaking HTTP/2, and then every call over HTTP/2. A grpc-go server,
// which answers the HTTP/1.1 request of a plain GET with its SETTINGS
// frame, gets that GET again over HTTP/2, and the next calls so.
func TestHTTPClientFindsHTTP2AtAnHTTP1Address(t *testing.T) {
	t.Parallel()
	// http1Then serves the ping service at a new address over HTTP/1.1
	// alone, calls it 5 times in Connect, and stops it; it returns the
	// address. It keeps no connection alive, so that no call to the
	// next server takes one that the stop closed.
	http1Then := func(t *testing.T, client *http.Client, opts []connect.ClientOption) string {
		t.Helper()
		var tl tally
		var pri atomic.Int32
		path, h := pingv1connect.NewPingServiceHandler(&pingServer{})
		mux := http.NewServeMux()
		mux.Handle(path, tl.tag("h1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			h.ServeHTTP(w, r)
		})))
		addr, stop := serveAt(t, "127.0.0.1:0", false, mux, &pri)
		ping := pingv1connect.NewPingServiceClient(client, "http://"+addr, opts...)
		for range 5 {
			if _, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatalf("Ping of the HTTP/1.1 server: %v", err)
			}
		}
		if calls, http1 := tl.take(); pri.Load() != 1 || calls["h1"] != 5 || http1 != 5 {
			t.Fatalf("HTTP/1.1 server got %d prefaces and %v calls, %d over HTTP/1; want one preface, 5 calls over HTTP/1", pri.Load(), calls, http1)
		}
		stop()
		return addr
	}
	t.Run("h2c and HTTP/1.1", func(t *testing.T) {
		t.Parallel()
		caller := kittest.NewServer(t, kit.Config{}, nil)
		client, opts := caller.HTTPClient(), caller.ClientOptions()
		addr := http1Then(t, client, opts)
		var tl tally
		var pri atomic.Int32
		path, h := pingv1connect.NewPingServiceHandler(&pingServer{})
		mux := http.NewServeMux()
		mux.Handle(path, tl.tag("h2c", h))
		serveAt(t, addr, true, mux, &pri)
		ping := pingv1connect.NewPingServiceClient(client, "http://"+addr, opts...)
		grpcPing := pingv1connect.NewPingServiceClient(client, "http://"+addr, append(opts, connect.WithGRPC())...)
		for i, p := range []pingv1connect.PingServiceClient{ping, ping, grpcPing, ping, ping} {
			if _, err := p.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatalf("Ping %d of the h2c server: %v", i, err)
			}
		}
		if calls, http1 := tl.take(); calls["h2c"] != 5 || http1 != 2 {
			t.Errorf("h2c server got %v calls, %d over HTTP/1; want 5, the 2 before the gRPC one over HTTP/1", calls, http1)
		}
	})
	t.Run("grpc-go", func(t *testing.T) {
		t.Parallel()
		client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
		addr := http1Then(t, client, nil)
		grpcGoHealth(t, addr)
		resp, err := client.Do(newRequest(t, http.MethodGet, "http://"+addr+"/grpc.health.v1.Health/Check", nil))
		if err != nil {
			t.Fatalf("GET of the grpc-go server: %v", err)
		}
		_ = resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("GET of the grpc-go server answered over %s; want HTTP/2", resp.Proto)
		}
		for i := range 3 {
			if err := healthCheck(t, client, "http://"+addr); err != nil {
				t.Fatalf("gRPC health Check %d of the grpc-go server: %v", i, err)
			}
		}
	})
	// grpc-go closes the connection once it read what is no h2c preface:
	// the rest of a body bigger than the sockets' buffers cannot be
	// written, and the write's error came before the SETTINGS frame's.
	t.Run("grpc-go, a 4MiB body", func(t *testing.T) {
		t.Parallel()
		client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
		addr := http1Then(t, client, nil)
		grpcGoHealth(t, addr)
		req := newRequest(t, http.MethodPost, "http://"+addr+"/grpc.health.v1.Health/Check", bytes.NewReader(make([]byte, 4<<20)))
		req.Header.Set("Content-Type", "application/proto")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST of 4MiB to the grpc-go server: %v", err)
		}
		_ = resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("POST of 4MiB to the grpc-go server answered over %s; want HTTP/2", resp.Proto)
		}
	})
}

// TestHTTPClientCallRefusedAtEachSendIsNotSent calls, in gRPC, an address
// behind which an L4 balancer sends the first three connections to an
// HTTP/1.1-only server and the next to grpc-go, which speaks HTTP/2 alone:
// the call's h2c attempt and its two probes reach the HTTP/1.1 server, and
// its last send, over HTTP/1.1, grpc-go, which refuses it with its
// SETTINGS frame. No handler saw any of the four sends, so the call fails
// with Unavailable caused by interceptors.ErrNotSent, which Retry sends
// again; the next call, over h2c, is answered.
func TestHTTPClientCallRefusedAtEachSendIsNotSent(t *testing.T) {
	t.Parallel()
	var pri, h1Calls atomic.Int32
	h1, _ := serveAt(t, "127.0.0.1:0", false, connectHealth(&h1Calls), &pri)
	h2 := grpcGoHealth(t, "127.0.0.1:0")
	front := newFront(t, func(i int) string {
		if i < 3 {
			return h1
		}
		return h2
	})
	client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
	err := healthCheck(t, client, "http://"+front.ln.Addr().String())
	if !errors.Is(err, interceptors.ErrNotSent) || connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("gRPC health Check refused at each of its sends = %v; want Unavailable caused by interceptors.ErrNotSent", err)
	}
	if pri.Load() != 3 || h1Calls.Load() != 0 {
		t.Errorf("the HTTP/1.1 server got %d prefaces and %d Checks; want 3 prefaces, no Check", pri.Load(), h1Calls.Load())
	}
	if err := healthCheck(t, client, "http://"+front.ln.Addr().String()); err != nil {
		t.Errorf("gRPC health Check after the refused one: %v", err)
	}
}
