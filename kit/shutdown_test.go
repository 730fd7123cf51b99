package kit_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// drainingServer's CountUp sends 1, waits for the server to shut down, then
// sends 2 and ends the stream.
type drainingServer struct {
	*pingServer
	stopping <-chan struct{}
}

func (d *drainingServer) CountUp(_ context.Context, _ *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	if err := stream.Send(&pingv1.CountUpResponse{Number: 1}); err != nil {
		return err
	}
	<-d.stopping
	return stream.Send(&pingv1.CountUpResponse{Number: 2})
}

func TestGracefulShutdownFinishesInFlightCalls(t *testing.T) {
	t.Parallel()
	svc := &drainingServer{pingServer: blockingPing()}
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		svc.stopping = srv.ShuttingDown()
		srv.Mount(pingv1connect.NewPingServiceHandler(svc, srv.HandlerOptions()...))
	})

	unary := make(chan error, 1)
	go func() {
		res, err := newPingClient(srv, srv.HTTP1Client()).Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 3}))
		if err == nil && res.Msg.GetNumber() != 3 {
			err = errors.New("wrong answer")
		}
		unary <- err
	}()
	<-svc.entered

	stream, err := newPingClient(srv, srv.HTTP2Client(), connect.WithGRPC()).CountUp(context.Background(), connect.NewRequest(&pingv1.CountUpRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() || stream.Msg().GetNumber() != 1 {
		t.Fatalf("first message: %v", stream.Err())
	}

	addr := srv.Addr().String()
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()

	// New connections are refused once shutdown begins...
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 10s after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// ...while the open stream and the in-flight call finish cleanly.
	if !stream.Receive() || stream.Msg().GetNumber() != 2 {
		t.Fatalf("second message: %v", stream.Err())
	}
	if stream.Receive() || stream.Err() != nil {
		t.Fatalf("stream did not end cleanly: %v", stream.Err())
	}
	close(svc.block)
	if err := <-unary; err != nil {
		t.Fatalf("in-flight unary call: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// net/http's HTTP/2 server forgets a stream that its client resets while
// the stream's handler still runs; Run must still wait for that handler,
// or a program's deferred clean-up runs under it.
func TestRunWaitsForHandlersOfCancelledCalls(t *testing.T) {
	t.Parallel()
	entered, cancelled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-r.Context().Done() // the client went away
			close(cancelled)
			<-release // and the handler still cleans up
		}))
	})
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/slow", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan struct{})
	go func() {
		defer close(called)
		if res, err := srv.HTTP2Client().Do(req); err == nil {
			res.Body.Close()
		}
	}()
	<-entered
	cancel()
	<-called
	<-cancelled

	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a handler was still running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestShutdownTimeoutCutsStuckCalls(t *testing.T) {
	t.Parallel()
	svc := blockingPing() // never released
	srv := newPingServer(t, kit.Config{ShutdownTimeout: 100 * time.Millisecond}, svc)
	failed := make(chan error, 1)
	go func() {
		_, err := newPingClient(srv, srv.HTTP2Client()).Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{}))
		failed <- err
	}()
	<-svc.entered
	if err := srv.Stop(); err == nil || !strings.Contains(err.Error(), "did not finish within 100ms") {
		t.Errorf("Run = %v, want a shutdown timeout", err)
	}
	if err := <-failed; err == nil {
		t.Error("stuck call succeeded")
	}
}

// Calls that run out the shutdown timeout must not take the background
// components' time: a subscriber still drains, and Run waits for it.
func TestBackgroundComponentsGetTheirOwnShutdownTimeout(t *testing.T) {
	t.Parallel()
	svc := blockingPing() // never released: the call uses up its timeout
	drained := make(chan struct{})
	srv := kittest.NewServer(t, kit.Config{ShutdownTimeout: 300 * time.Millisecond}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
		s.Go(func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(100 * time.Millisecond) // finishing its handlers, acking
			close(drained)
			return nil
		})
	})
	go func() {
		_, _ = newPingClient(srv, srv.HTTP2Client()).Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{}))
	}()
	<-svc.entered
	err := srv.Stop()
	if err == nil || !strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Errorf("Run = %v, want the stuck call named", err)
	}
	if err != nil && strings.Contains(err.Error(), "background components") {
		t.Errorf("Run = %v: the component had no time of its own", err)
	}
	select {
	case <-drained:
	default:
		t.Error("Run returned before the background component had drained")
	}
}

func TestShutdownReportsHandlersThatIgnoreTheirContext(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	srv := kittest.NewServer(t, kit.Config{ShutdownTimeout: 50 * time.Millisecond}, func(s *kit.Server) {
		s.Mount("/stuck", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
		}))
	})
	go func() {
		if res, err := srv.HTTP2Client().Post(srv.URL+"/stuck", "text/plain", strings.NewReader("x")); err == nil {
			res.Body.Close()
		}
	}()
	<-entered
	if err := srv.Stop(); err == nil || !strings.Contains(err.Error(), "handlers still running 1s after their calls were cut") {
		t.Errorf("Run = %v, want it to name the handlers still running", err)
	}
}

func TestBackgroundComponentFailureStopsTheServer(t *testing.T) {
	t.Parallel()
	boom := errors.New("broker connection lost")
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	srv.Go(func(ctx context.Context) error { return boom })
	srv.Go(func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	err = srv.Run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	select {
	case <-stopped:
	default:
		t.Error("the other component was not stopped")
	}
}

// stallingConn is a client connection whose reads block, once stall is
// closed, until release is: its peer's writes back up in the server.
type stallingConn struct {
	net.Conn
	stall, release <-chan struct{}
}

func (c *stallingConn) Read(p []byte) (int, error) {
	select {
	case <-c.stall:
		<-c.release
		return 0, net.ErrClosed
	default:
		return c.Conn.Read(p)
	}
}

// Past ShutdownTimeout, Run closes every connection. Connections whose
// clients stopped reading hold unsent bytes, and closing them must not
// wait to flush each in turn (frame batching's CloseGrace, 1s each): the
// shutdown overran its documented maximum by about a second per such
// connection.
func TestShutdownTimeoutClosesStalledConnectionsAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tls  bool
	}{
		{name: "h2c"},
		{name: "h2 over TLS", tls: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testShutdownClosesStalledConnections(t, tc.tls)
		})
	}
}

func testShutdownClosesStalledConnections(t *testing.T, useTLS bool) {
	const (
		conns   = 10
		timeout = time.Second
	)
	var (
		mu       sync.Mutex
		progress = map[*http.Request]time.Time{} // each stream's last flushed chunk
	)
	cfg := kit.Config{ShutdownTimeout: timeout}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	var clientTLS *tls.Config
	if useTLS {
		var pool *x509.CertPool
		cfg.TLSCertFile, cfg.TLSKeyFile, pool = selfSigned(t, t.TempDir())
		clientTLS = &tls.Config{RootCAs: pool}
		protocols = http.Protocols{}
		protocols.SetHTTP2(true)
	}
	srv := kittest.NewServer(t, cfg, func(s *kit.Server) {
		s.Mount("/stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := make([]byte, 16<<10)
			rc := http.NewResponseController(w)
			for { // ignores the shutdown: it runs out the timeout
				if _, err := w.Write(chunk); err != nil {
					return
				}
				if err := rc.Flush(); err != nil {
					return
				}
				mu.Lock()
				progress[r] = time.Now()
				mu.Unlock()
			}
		}))
	})

	release := make(chan struct{})
	defer close(release)
	for range conns {
		stall := make(chan struct{})
		client := &http.Client{Transport: &http.Transport{
			Protocols:       &protocols,
			TLSClientConfig: clientTLS,
			// Windows far larger than the sockets' buffers, so that the
			// server's writes wait on the socket, not on flow control.
			HTTP2: &http.HTTP2Config{MaxReceiveBufferPerConnection: 1 << 30, MaxReceiveBufferPerStream: 1 << 30},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				if err := c.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
					return nil, err
				}
				return &stallingConn{Conn: c, stall: stall, release: release}, nil
			},
		}}
		res, err := client.Post(srv.URL+"/stream", "application/octet-stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.ProtoMajor != 2 {
			t.Fatalf("response over %s, want HTTP/2", res.Proto)
		}
		if _, err := io.ReadFull(res.Body, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		close(stall)
		t.Cleanup(func() { res.Body.Close() })
	}
	// Wait until every stream has stopped making progress: its writes
	// wait on a full socket.
	for deadline := time.Now().Add(20 * time.Second); ; {
		mu.Lock()
		stalled := len(progress) == conns
		for _, last := range progress {
			stalled = stalled && time.Since(last) > 300*time.Millisecond
		}
		mu.Unlock()
		if stalled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the streams did not stall within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	begin := time.Now()
	err := srv.Stop()
	if err == nil || !strings.Contains(err.Error(), "did not finish within 1s") {
		t.Errorf("Run = %v, want a shutdown timeout", err)
	}
	// Generous: a second per connection would be ten.
	if d, limit := time.Since(begin), timeout+2*time.Second; d > limit {
		t.Errorf("shutdown took %s with %d stalled connections, want under %s", d, conns, limit)
	}
}

// A connection that has sent nothing (a client pool's spare, a load
// balancer's pre-opened one) must not hold the shutdown: net/http's
// Shutdown takes it for idle only 5s after it connected, past this
// ShutdownTimeout, and Run then reported in-flight calls that were none.
func TestShutdownClosesSilentConnections(t *testing.T) {
	t.Parallel()
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			t.Parallel()
			srv := newPingServer(t, kit.Config{ShutdownTimeout: 3 * time.Second, NoFrameBatching: !batching}, nil)
			c := srv.Dial(t)
			// A call on a connection made after it: the server has
			// accepted the silent one (in order, one at a time).
			client := &http.Client{Transport: &http.Transport{}}
			if _, err := newPingClient(srv, client).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
				t.Fatal(err)
			}
			client.CloseIdleConnections()
			if err := srv.Stop(); err != nil {
				t.Errorf("Run = %v with a silent connection open", err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("the silent connection's read = %v, want EOF", err)
			}
		})
	}
}

// So too on the admin listener, which closes last: a silent connection
// (a scraper's or a prober's spare) held Run for 5s, net/http's own
// bound, which no Run can beat without closing it; with the fix it takes
// about freshGrace (1s). The only test here that reads a clock: the admin
// listener's Shutdown reports nothing else.
func TestShutdownClosesSilentAdminConnections(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{AdminAddr: "127.0.0.1:0", ShutdownTimeout: 20 * time.Second}, nil)
	c, err := net.Dial("tcp", srv.AdminAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A request on a connection made after it: the listener has accepted
	// the silent one.
	client := &http.Client{Transport: &http.Transport{}}
	res, err := client.Get(srv.AdminURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	client.CloseIdleConnections()
	begin := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took >= 4500*time.Millisecond {
		t.Errorf("Run took %s with a silent admin connection open; net/http alone takes 5s", took)
	}
}

// An HTTP/2 connection that has sent its preface and no request yet (a
// gRPC client's connection to one backend of several that round robin has
// not picked yet) is shut down as HTTP/2 shuts down, with a GOAWAY: a
// client that starts a call just then learns that the server did not take
// it and retries it elsewhere. Closed without one, the client's call fails.
func TestShutdownSendsGoAwayToSilentHTTP2Connections(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	for _, tc := range []struct {
		name string
		tls  bool
		cfg  kit.Config
	}{
		{name: "h2c", cfg: kit.Config{}},
		{name: "h2c without batching", cfg: kit.Config{NoFrameBatching: true}},
		{name: "TLS", tls: true, cfg: kit.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}},
		{name: "TLS without batching", tls: true, cfg: kit.Config{TLSCertFile: certFile, TLSKeyFile: keyFile, NoFrameBatching: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.ShutdownTimeout = 10 * time.Second
			srv := newPingServer(t, tc.cfg, nil)
			c := srv.Dial(t)
			if tc.tls {
				tlsConn := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
				if err := tlsConn.Handshake(); err != nil || tlsConn.ConnectionState().NegotiatedProtocol != "h2" {
					t.Fatalf("handshake: %v, protocol %q", err, tlsConn.ConnectionState().NegotiatedProtocol)
				}
				c = tlsConn
			}
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
				t.Fatal(err)
			}
			fr := http2.NewFramer(c, c)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			// The server acknowledges the settings once it has read the
			// preface.
			for acked := false; !acked; {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if s, ok := f.(*http2.SettingsFrame); ok {
					if !s.IsAck() {
						_ = fr.WriteSettingsAck()
					}
					acked = s.IsAck()
				}
			}
			time.Sleep(1200 * time.Millisecond) // older than a client that is still sending its request
			stopped := make(chan error, 1)
			go func() { stopped <- srv.Stop() }()
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("the connection ended (%v) without a GOAWAY", err)
				}
				if g, ok := f.(*http2.GoAwayFrame); ok {
					if g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 0 {
						t.Errorf("GOAWAY %v, last stream %d; want NO_ERROR, 0", g.ErrCode, g.LastStreamID)
					}
					break
				}
			}
			_ = c.Close()
			if err := <-stopped; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
}
