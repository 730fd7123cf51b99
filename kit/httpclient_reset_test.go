package kit_test

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// TestHTTPClientConnectionReset kills the server of a call in flight, its
// connection reset or closed: the caller gets Unavailable, which Retry retries for
// an idempotent method and a breaker counts, not Canceled, which says that
// the caller gave up and is neither retried nor counted. connect-go reads a
// reset as a peer that went away, which on a server is its client, and a
// stream's connection closed in the middle of a message as a protocol
// error (Internal).
func TestHTTPClientConnectionReset(t *testing.T) {
	t.Parallel()
	for _, p := range balancedProtocols {
		for _, reset := range []bool{true, false} {
			name := p.name + "/reset"
			if !reset {
				name = p.name + "/closed"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ping := blockingPing()
				backend := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
					srv.Mount(pingv1connect.NewPingServiceHandler(ping, srv.HandlerOptions()...))
				})
				t.Cleanup(func() { close(ping.block) })
				stop := (*killable).close
				if reset {
					stop = (*killable).kill
				}

				t.Run("unary", func(t *testing.T) {
					front := newKillable(t, backend.Addr().String())
					client := pingClientOf(t, front.addr(), p.opts)
					go func() {
						<-ping.entered
						stop(front)
					}()
					_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
					if connect.CodeOf(err) != connect.CodeUnavailable {
						t.Errorf("Ping whose server was killed: %v (code %v), want code unavailable", err, connect.CodeOf(err))
					}
				})
				t.Run("stream", func(t *testing.T) {
					front := newKillable(t, backend.Addr().String())
					client := pingClientOf(t, front.addr(), p.opts)
					stream := client.CumSum(t.Context())
					if err := stream.Send(&pingv1.CumSumRequest{Number: 2}); err != nil {
						t.Fatal(err)
					}
					if _, err := stream.Receive(); err != nil {
						t.Fatal(err)
					}
					stop(front)
					_, err := stream.Receive()
					if connect.CodeOf(err) != connect.CodeUnavailable {
						t.Errorf("Receive on a stream whose server was killed: %v (code %v), want code unavailable", err, connect.CodeOf(err))
					}
					_ = stream.CloseRequest()
					_ = stream.CloseResponse()
				})
			})
		}
	}
}

// pingClientOf returns a ping client that calls addr through the
// HTTPClient of a kit server, with its client options and opts.
func pingClientOf(t *testing.T, addr string, opts []connect.ClientOption) pingv1connect.PingServiceClient {
	t.Helper()
	caller := kittest.NewServer(t, kit.Config{}, nil, kit.WithResolver(kit.NewStaticNames(addr)))
	return pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://ping.test", append(caller.ClientOptions(), opts...)...)
}

// killable forwards the TCP connections it accepts on its own loopback
// address to a server, until kill closes its listener and every
// connection at once, as a process killed (or its node lost) does.
type killable struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	killed bool
	wg     sync.WaitGroup
}

func newKillable(t *testing.T, target string) *killable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &killable{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	k.wg.Go(k.serve)
	t.Cleanup(k.kill)
	return k
}

func (k *killable) addr() string { return k.ln.Addr().String() }

func (k *killable) serve() {
	for {
		c, err := k.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", k.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !k.track(c, up) {
			continue
		}
		k.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
		k.wg.Go(func() { _, _ = io.Copy(c, up); _ = c.Close() })
	}
}

// track remembers c and up, or closes them when kill came first.
func (k *killable) track(c, up net.Conn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.killed {
		_ = c.Close()
		_ = up.Close()
		return false
	}
	k.conns[c], k.conns[up] = struct{}{}, struct{}{}
	return true
}

// kill closes the listener and resets every connection, as the kernel
// does for a dead process's sockets that held data unread, and waits for
// the forwarding to end.
func (k *killable) kill() { k.stop(true) }

// close closes the listener and every connection (a FIN, as the kernel
// sends for a dead process's sockets with nothing unread), and waits for
// the forwarding to end.
func (k *killable) close() { k.stop(false) }

func (k *killable) stop(reset bool) {
	k.mu.Lock()
	k.killed = true
	_ = k.ln.Close()
	if reset { // before any close: the forwarding closes the other side of each
		for c := range k.conns {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
	}
	for c := range k.conns {
		_ = c.Close()
	}
	k.mu.Unlock()
	k.wg.Wait()
}

// TestHTTPClientBreakerOnePodKilled kills one of three servers behind a
// name while five calls of one procedure are in flight on it, with
// KIT_CLIENT_BREAKER on: those calls fail, but the breaker, which is the
// name's (all its Pods'), must not open for them, since the client leaves
// the dead address out and the two others serve every later call. It
// opened, for KIT_CLIENT_BREAKER_OPEN_TIMEOUT (10s), at five calls lost
// in a row.
func TestHTTPClientBreakerOnePodKilled(t *testing.T) {
	t.Parallel()
	const inFlight = 5 // interceptors.DefaultBreakerConsecutiveFailures
	client, errs := killWithCallsInFlight(t, kit.Config{ClientBreaker: kit.ClientBreakerConfig{Enabled: true}}, inFlight)
	if lost := len(errs); lost != inFlight {
		t.Errorf("%d calls failed at the kill, want the %d in flight on the killed server", lost, inFlight)
	}
	for i := range 10 {
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: int64(i)})); err != nil {
			t.Fatalf("Ping %d after the kill: %v, want the two servers left to serve it", i, err)
		}
	}
}

// TestHTTPClientRetryOnePodKilled kills one of three servers behind a name
// while twelve idempotent calls are in flight on it, with KIT_CLIENT_RETRY
// on: every one is retried on the two others. The name's retry budget (10
// tokens, retries stop at half) stopped the retries after the fifth lost
// call, and 8 of the 12 failed.
func TestHTTPClientRetryOnePodKilled(t *testing.T) {
	t.Parallel()
	if _, errs := killWithCallsInFlight(t, kit.Config{ClientRetry: kit.ClientRetryConfig{Enabled: true}}, 12); len(errs) > 0 {
		t.Errorf("%d of 12 idempotent calls in flight on the killed server failed, want none (retried); first: %v", len(errs), errs[0])
	}
}

// killWithCallsInFlight calls a name of three servers with Ping through
// the HTTPClient of a kit server configured with cfg, until inFlight calls
// are held by one of them, then kills that one (its connections reset),
// and returns the client and the errors of the calls that failed.
func killWithCallsInFlight(t *testing.T, cfg kit.Config, inFlight int) (pingv1connect.PingServiceClient, []error) {
	t.Helper()
	var tl tally
	healthy := pingBackends(t, 2, &tl)
	ping := blockingPing()
	entered := make(chan struct{}, 2*inFlight)
	dying := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		path, h := pingv1connect.NewPingServiceHandler(ping, srv.HandlerOptions()...)
		srv.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			h.ServeHTTP(w, r)
		}))
	})
	t.Cleanup(func() { close(ping.block) })
	front := newKillable(t, dying.Addr().String())
	caller := kittest.NewServer(t, cfg, nil,
		kit.WithResolver(kit.NewStaticNames(front.addr(), healthy[0].Addr().String(), healthy[1].Addr().String())))
	client := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://ping.test", caller.ClientOptions()...)

	var calls sync.WaitGroup
	done := make(chan error, 3*inFlight)
	for n := 0; n < inFlight; {
		calls.Go(func() {
			_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
			done <- err
		})
		select { // the call went to a healthy server, or is held by the dying one
		case err := <-done:
			if err != nil {
				t.Fatalf("Ping before the kill: %v", err)
			}
		case <-entered:
			n++
		}
	}
	front.kill()
	calls.Wait()
	close(done)
	var errs []error
	for err := range done {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return client, errs
}
