package kit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/bufbuild/httplb/resolver"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/testcert"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// tally counts the calls each backend served, and those that came over
// HTTP/1.
type tally struct {
	mu    sync.Mutex
	calls map[string]int
	http1 int
}

func (t *tally) tag(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		if t.calls == nil {
			t.calls = map[string]int{}
		}
		t.calls[name]++
		if r.ProtoMajor != 2 {
			t.http1++
		}
		t.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// take returns the counts since the last take and clears them.
func (t *tally) take() (calls map[string]int, http1 int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	calls, http1 = t.calls, t.http1
	t.calls, t.http1 = nil, 0
	return calls, http1
}

// pingBackends runs n kit servers with the ping service and opts, each
// counted in tl under its address.
func pingBackends(t *testing.T, n int, tl *tally, opts ...kit.Option) []*kittest.Server {
	t.Helper()
	backends := make([]*kittest.Server, n)
	for i := range backends {
		backends[i] = pingBackend(t, tl, &pingServer{}, opts...)
	}
	return backends
}

// pingBackend runs a kit server with svc as the ping service and opts,
// counted in tl under its address.
func pingBackend(t *testing.T, tl *tally, svc pingv1connect.PingServiceHandler, opts ...kit.Option) *kittest.Server {
	t.Helper()
	var name string
	backend := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		path, h := pingv1connect.NewPingServiceHandler(svc, srv.HandlerOptions()...)
		srv.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tl.tag(name, h).ServeHTTP(w, r)
		}))
	}, opts...)
	name = backend.Addr().String()
	return backend
}

func addrsOf(backends []*kittest.Server) []string {
	addrs := make([]string, len(backends))
	for i, b := range backends {
		addrs[i] = b.Addr().String()
	}
	return addrs
}

// balancedPingClient returns a ping client that calls backends through the
// HTTPClient of a kit server, by a name that resolves to all of them.
func balancedPingClient(t *testing.T, backends []*kittest.Server, opts ...connect.ClientOption) pingv1connect.PingServiceClient {
	t.Helper()
	client, _ := balancedPingCaller(t, kit.Config{}, backends, opts...)
	return client
}

// balancedPingCaller is balancedPingClient with a caller of config cfg,
// which it also returns.
func balancedPingCaller(t *testing.T, cfg kit.Config, backends []*kittest.Server, opts ...connect.ClientOption) (pingv1connect.PingServiceClient, *kittest.Server) {
	t.Helper()
	caller := kittest.NewServer(t, cfg, nil, kit.WithResolver(kit.NewStaticNames(addrsOf(backends)...)))
	return pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://ping.test", append(caller.ClientOptions(), opts...)...), caller
}

// eachBalancedProtocol runs test in a parallel subtest for each of
// balancedProtocols, with three ping backends counted in tl and a client
// that calls them through HTTPClient.
func eachBalancedProtocol(t *testing.T, test func(t *testing.T, tl *tally, backends []*kittest.Server, client pingv1connect.PingServiceClient)) {
	for _, p := range balancedProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			var tl tally
			backends := pingBackends(t, 3, &tl)
			test(t, &tl, backends, balancedPingClient(t, backends, p.opts...))
		})
	}
}

// balancedProtocols are the protocols a connect client speaks through
// HTTPClient to a cleartext server, all over h2c.
var balancedProtocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}},
	{"connect+proto", nil},
	{"connect+json", []connect.ClientOption{connect.WithProtoJSON()}},
}

// TestHTTPClientSpreadsCalls calls one name that resolves to three kit
// servers: every protocol's calls reach all three, over HTTP/2, and every
// stream type works (bidi streams need HTTP/2 end to end).
func TestHTTPClientSpreadsCalls(t *testing.T) {
	t.Parallel()
	eachBalancedProtocol(t, func(t *testing.T, tl *tally, backends []*kittest.Server, client pingv1connect.PingServiceClient) {
		ctx := t.Context()

		const calls = 30
		for i := range calls {
			res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: int64(i)}))
			if err != nil || res.Msg.GetNumber() != int64(i) {
				t.Fatalf("Ping %d = %v, %v", i, res, err)
			}
		}
		served, http1 := tl.take()
		t.Logf("calls served: %v", served)
		for _, addr := range addrsOf(backends) {
			if served[addr] < calls/6 {
				t.Errorf("backend %s served %d of %d calls, want at least %d (round robin: %d each); served: %v", addr, served[addr], calls, calls/6, calls/3, served)
			}
		}
		if http1 != 0 {
			t.Errorf("%d calls came over HTTP/1, want all over HTTP/2", http1)
		}

		callStreams(t, client, true)
	})
}

// TestHTTPClientLeavesOutAStoppedBackend stops one of three servers behind
// a name, which the name still resolves to (as DNS does until its record
// goes): every later call succeeds on the other two.
func TestHTTPClientLeavesOutAStoppedBackend(t *testing.T) {
	t.Parallel()
	eachBalancedProtocol(t, func(t *testing.T, tl *tally, backends []*kittest.Server, client pingv1connect.PingServiceClient) {
		ctx := t.Context()
		for i := range 9 { // a connection to each
			if _, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: int64(i)})); err != nil {
				t.Fatalf("Ping before the stop: %v", err)
			}
		}
		stopped := backends[0].Addr().String()
		if err := backends[0].Stop(); err != nil {
			t.Fatal(err)
		}
		tl.take()
		const calls = 60
		var failed []string
		for i := range calls {
			if _, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: int64(i)})); err != nil {
				failed = append(failed, err.Error())
			}
		}
		if len(failed) > 0 {
			t.Errorf("%d of %d calls failed after one of three backends stopped, want none; first: %s", len(failed), calls, failed[0])
		}
		served, _ := tl.take()
		if served[stopped] != 0 {
			t.Errorf("the stopped backend served %d calls", served[stopped])
		}
		t.Logf("calls served after the stop: %v", served)
	})
}

// TestHTTPClientNoHealthyNamesTheHost: once every address of a name has
// refused a connection, calls fail at once with Unavailable naming the
// host called, where connect-go said "unavailable: unavailable: no healthy
// connections" of httplb's error, naming none (seen from a service calling
// the example while it was stopped).
func TestHTTPClientNoHealthyNamesTheHost(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	_ = ln.Close() // nothing listens there: connections refused
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), "http://"+host)
	var last error
	for range 20 { // the first is refused; the next find no healthy address
		_, last = client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
		if last == nil || !strings.Contains(last.Error(), "connection refused") {
			break
		}
	}
	if connect.CodeOf(last) != connect.CodeUnavailable || !strings.Contains(last.Error(), "no healthy connections to "+host) ||
		strings.Contains(last.Error(), "unavailable: unavailable") {
		t.Errorf("a call once %s refused connections: %v; want unavailable, naming it once", host, last)
	}
	if !errors.Is(last, interceptors.ErrNotSent) {
		t.Errorf("a call refused for want of a healthy connection: %v; want interceptors.ErrNotSent as its cause, since none of it left", last)
	}
}

// unresolvable is a resolver whose every name fails to resolve, as DNS
// fails a name that has no record.
type unresolvable struct{}

func (unresolvable) New(_ context.Context, _, hostPort string, rcv resolver.Receiver, _ <-chan struct{}) io.Closer {
	host, _, _ := net.SplitHostPort(hostPort)
	rcv.OnResolveError(&net.DNSError{Err: "no such host", Name: host, IsNotFound: true})
	return io.NopCloser(nil)
}

// TestHTTPClientUnresolvedIsNotSent: a call to a name that resolves to
// nothing fails at once with Unavailable caused by interceptors.ErrNotSent,
// as one refused for want of a healthy connection does: nothing of it left
// the client. It carried the resolver's error alone, which Retry knew as
// never sent but errors.Is(err, interceptors.ErrNotSent) did not.
func TestHTTPClientUnresolvedIsNotSent(t *testing.T) {
	t.Parallel()
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithResolver(unresolvable{}), kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	client := pingv1connect.NewPingServiceClient(srv.HTTPClient(), "http://nowhere.test:8080")
	_, err = client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(fmt.Sprint(err), "lookup nowhere.test: no such host") ||
		!errors.Is(err, interceptors.ErrNotSent) {
		t.Errorf("Ping of a name that resolves to nothing = %v; want unavailable, the lookup's error, caused by interceptors.ErrNotSent", err)
	}
}

// connCounter is an h2c server with the ping service that counts its open
// connections.
type connCounter struct {
	addr string
	mu   sync.Mutex
	open int
}

func newConnCounter(t *testing.T, tl *tally) *connCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &connCounter{addr: ln.Addr().String()}
	mux := http.NewServeMux()
	path, h := pingv1connect.NewPingServiceHandler(&pingServer{})
	mux.Handle(path, tl.tag(c.addr, h))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols, ConnState: func(_ net.Conn, state http.ConnState) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch state {
		case http.StateNew:
			c.open++
		case http.StateClosed, http.StateHijacked:
			c.open--
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return c
}

func (c *connCounter) conns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// eventually polls cond every 10ms for up to 10s, and reports whether it
// came true.
func eventually(cond func() bool) bool {
	for range 1000 {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// TestHTTPClientFollowsTheName changes the addresses a name resolves to:
// an address added gets calls, and one removed gets none and has its
// connection closed.
func TestHTTPClientFollowsTheName(t *testing.T) {
	t.Parallel()
	var tl tally
	a, b := newConnCounter(t, &tl), newConnCounter(t, &tl)
	names := kit.NewStaticNames(a.addr)
	caller := kittest.NewServer(t, kit.Config{}, nil, kit.WithResolver(names))
	client := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://ping.test", caller.ClientOptions()...)
	ping := func(n int) map[string]int {
		t.Helper()
		for i := range n {
			if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: int64(i)})); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}
		served, _ := tl.take()
		return served
	}
	if served := ping(10); served[a.addr] != 10 {
		t.Fatalf("served %v, want all 10 calls by %s", served, a.addr)
	}
	names.Set(a.addr, b.addr)
	// The balancer takes the new address in the background.
	if !eventually(func() bool { return ping(10)[b.addr] > 0 }) {
		t.Fatalf("the address added, %s, got no call", b.addr)
	}
	names.Set(b.addr)
	if !eventually(func() bool { return a.conns() == 0 }) {
		t.Fatalf("%d connections to the address removed, %s, still open", a.conns(), a.addr)
	}
	if served := ping(10); served[b.addr] != 10 {
		t.Errorf("served %v after %s was removed, want all 10 calls by %s", served, a.addr, b.addr)
	}
}

// signalOn is a slog handler that closes ch when a record with message msg
// is logged.
type signalOn struct {
	slog.Handler
	msg  string
	once *sync.Once
	ch   chan struct{}
}

func (s signalOn) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == s.msg {
		s.once.Do(func() { close(s.ch) })
	}
	return s.Handler.Handle(ctx, r)
}

func (s signalOn) WithAttrs(as []slog.Attr) slog.Handler {
	s.Handler = s.Handler.WithAttrs(as)
	return s
}

func (s signalOn) WithGroup(name string) slog.Handler {
	s.Handler = s.Handler.WithGroup(name)
	return s
}

// clientGoroutines returns the stacks of the goroutines of HTTPClient's
// balancer and health checks (its connections' are counted by the server
// side, connCounter).
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	var found []string
	for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "bufbuild/httplb") || strings.Contains(g, "dialHealth") {
			found = append(found, g)
		}
	}
	return found
}

// TestHTTPClientClosedAtShutdown shuts down a server whose HTTPClient has a
// call in flight: the call finishes, then the client closes: its
// connections and goroutines are gone, and later calls fail. Not parallel:
// it counts goroutines.
func TestHTTPClientClosedAtShutdown(t *testing.T) {
	if g := clientGoroutines(); len(g) > 0 {
		t.Fatalf("client goroutines before the test:\n%s", strings.Join(g, "\n\n"))
	}
	var tl tally
	backend := newConnCounter(t, &tl)
	slow := blockingPing()
	slowBackend := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(slow, srv.HandlerOptions()...))
	})

	closing := make(chan struct{})
	logger := slog.New(signalOn{Handler: slog.NewTextHandler(t.Output(), nil), msg: "stopped background components", once: new(sync.Once), ch: closing})
	caller, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(logger),
		kit.WithResolver(kit.NewStaticNames(backend.addr)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- caller.Run(ctx) }()

	client := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://ping.test", caller.ClientOptions()...)
	for range 3 {
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
			t.Fatal(err)
		}
	}
	if backend.conns() != 1 {
		t.Fatalf("%d connections to the backend, want 1", backend.conns())
	}
	slowClient := pingv1connect.NewPingServiceClient(caller.HTTPClient(), slowBackend.URL, caller.ClientOptions()...)
	inFlight := make(chan error, 1)
	go func() {
		_, err := slowClient.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{}))
		inFlight <- err
	}()
	<-slow.entered

	cancel()
	<-closing // the client is closed next
	close(slow.block)
	if err := <-inFlight; err != nil {
		t.Errorf("the call in flight at shutdown failed: %v", err)
	}
	if err := <-ran; err != nil {
		t.Errorf("Run = %v", err)
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err == nil {
		t.Error("a call on the HTTP client after the shutdown succeeded, want it to fail")
	}
	if !eventually(func() bool { return backend.conns() == 0 }) {
		t.Errorf("%d connections to the backend still open after the shutdown", backend.conns())
	}
	var left []string
	if !eventually(func() bool { left = clientGoroutines(); return len(left) == 0 }) {
		t.Errorf("%d client goroutines left after the shutdown:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// TestHTTPClientShutdownReportsACallLeftOpen shuts down a server whose
// HTTPClient holds a response whose body was never closed: Run waits for it
// no longer than its grace, and says so in its error.
func TestHTTPClientShutdownReportsACallLeftOpen(t *testing.T) {
	t.Parallel()
	var tl tally
	backend := newConnCounter(t, &tl)
	caller := kittest.NewServer(t, kit.Config{ShutdownTimeout: 50 * time.Millisecond}, nil, kit.WithResolver(kit.NewStaticNames(backend.addr)))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://svc.test/", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := caller.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	if err := caller.Stop(); err == nil || !strings.Contains(err.Error(), "calls in flight on the HTTP client did not finish") {
		t.Errorf("Run = %v, want an error about the call left open on the HTTP client", err)
	}
}

// TestHTTPClientMutualTLS calls two kit servers that require a client
// certificate from a private authority, over https:// and a name that
// resolves to both: the client trusts the authority of
// KIT_CLIENT_TLS_CA_FILE, shows the certificate of KIT_CLIENT_TLS_CERT_FILE,
// and spreads its calls over both, over HTTP/2.
func TestHTTPClientMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	dir := t.TempDir()
	caFile, err := pki.ca.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := testcert.WriteFiles(dir, "client", pki.client)
	if err != nil {
		t.Fatal(err)
	}
	var tl tally
	backends := pingBackends(t, 2, &tl, kit.WithTLSConfig(pki.mTLSConfig("Certificates")))
	caller := kittest.NewServer(t, kit.Config{HTTPClient: kit.HTTPClientConfig{TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile}},
		nil, kit.WithResolver(kit.NewStaticNames(addrsOf(backends)...)))
	client := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "https://localhost", append(caller.ClientOptions(), connect.WithGRPC())...)
	for i := range 10 {
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: int64(i)})); err != nil {
			t.Fatalf("Ping %d: %v", i, err)
		}
	}
	served, http1 := tl.take()
	for _, addr := range addrsOf(backends) {
		if served[addr] == 0 {
			t.Errorf("backend %s served no call; served: %v", addr, served)
		}
	}
	if http1 != 0 {
		t.Errorf("%d calls came over HTTP/1, want all over HTTP/2", http1)
	}
}

// TestHTTPClientTLSFilesChecked checks that New refuses client TLS files
// that do not load, naming the variable.
func TestHTTPClientTLSFilesChecked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  kit.HTTPClientConfig
		want string
	}{
		{name: "no CA file", cfg: kit.HTTPClientConfig{TLSCAFile: dir + "/none.pem"}, want: "KIT_CLIENT_TLS_CA_FILE"},
		{name: "no certificate in the CA file", cfg: kit.HTTPClientConfig{TLSCAFile: dir}, want: "KIT_CLIENT_TLS_CA_FILE"},
		{name: "no key pair", cfg: kit.HTTPClientConfig{TLSCertFile: dir + "/c.pem", TLSKeyFile: dir + "/k.pem"}, want: "KIT_CLIENT_TLS_CERT_FILE"},
		{name: "certificate without key", cfg: kit.HTTPClientConfig{TLSCertFile: dir + "/c.pem"}, want: "KIT_CLIENT_TLS_CERT_FILE and KIT_CLIENT_TLS_KEY_FILE must be set together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := kit.New(kit.Config{HTTPClient: tc.cfg, AdminAddr: kit.AdminOff})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
