package kit_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/testcert"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// testPKI is an authority and the server and client certificates it issued.
type testPKI struct {
	ca             *testcert.Authority
	server, client tls.Certificate
}

func newTestPKI(tb testing.TB) *testPKI {
	tb.Helper()
	ca, err := testcert.New()
	if err != nil {
		tb.Fatal(err)
	}
	p := &testPKI{ca: ca}
	if p.server, err = ca.Issue("server"); err != nil {
		tb.Fatal(err)
	}
	if p.client, err = ca.Issue("client"); err != nil {
		tb.Fatal(err)
	}
	return p
}

// clientTLS returns a client config trusting p's authority, showing p's
// client certificate if withCert. Each transport needs its own: net/http's
// changes the NextProtos of the one it is given.
func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS12}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.client}
	}
	return cfg
}

// tlsClients returns a client speaking HTTP/2 only and one speaking
// HTTP/1.1 only, both over TLS with cfg.
func tlsClients(tb testing.TB, cfg *tls.Config) (h2, h1 *http.Client) {
	tb.Helper()
	var p2, p1 http.Protocols
	p2.SetHTTP2(true)
	p1.SetHTTP1(true)
	h2 = &http.Client{Transport: &http.Transport{Protocols: &p2, TLSClientConfig: cfg.Clone()}}
	h1 = &http.Client{Transport: &http.Transport{Protocols: &p1, TLSClientConfig: cfg.Clone()}}
	tb.Cleanup(h2.CloseIdleConnections)
	tb.Cleanup(h1.CloseIdleConnections)
	return h2, h1
}

// mTLSConfig is a server config that requires a client certificate from
// p's authority, with p's server certificate given the way named by how.
func (p *testPKI) mTLSConfig(how string) *tls.Config {
	cfg := &tls.Config{ClientCAs: p.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	switch how {
	case "Certificates":
		cfg.Certificates = []tls.Certificate{p.server}
	case "GetCertificate":
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &p.server, nil }
	case "GetConfigForClient":
		// As a config that rotates its certificates or authorities
		// builds it: a new config per handshake, without NextProtos.
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{
				Certificates: []tls.Certificate{p.server},
				ClientCAs:    p.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
			}, nil
		}
	}
	return cfg
}

// Under mutual TLS, with the server's certificate in the config, from
// GetCertificate or from GetConfigForClient, and with frame batching on or
// off, every client with a certificate calls over HTTP/2 (gRPC with
// grpc-go, which insists on h2 by ALPN; connect's gRPC, gRPC-Web and
// Connect) and HTTP/1.1 (gRPC-Web, Connect JSON), and every client without
// one is refused in the handshake. A config from GetConfigForClient
// negotiated no protocol: grpc-go failed, and the others fell back to
// HTTP/1.1.
func TestMutualTLSServesEveryProtocol(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	for _, how := range []string{"Certificates", "GetCertificate", "GetConfigForClient"} {
		for _, noBatching := range []bool{false, true} {
			name := how
			if noBatching {
				name += "/no batching"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := newPingServer(t, kit.Config{NoFrameBatching: noBatching}, nil, kit.WithTLSConfig(pki.mTLSConfig(how)))
				url := "https://" + srv.Addr().String()

				for _, withCert := range []bool{true, false} {
					h2, h1 := tlsClients(t, pki.clientTLS(withCert))
					for _, tc := range tlsProtocols(h2, h1) {
						client := pingv1connect.NewPingServiceClient(tc.Client, url, tc.Options...)
						res, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 7}))
						if !withCert {
							// Usually "remote error: tls: certificate required";
							// under TLS 1.3 the client may write before it
							// reads the server's alert ("broken pipe").
							if err == nil {
								t.Errorf("%s without a client certificate: Ping succeeded", tc.Name)
							}
							continue
						}
						if err != nil {
							t.Errorf("%s: Ping = %v", tc.Name, err)
							continue
						}
						if res.Msg.GetNumber() != 7 {
							t.Errorf("%s: Ping = %d, want 7", tc.Name, res.Msg.GetNumber())
						}
					}
					// The protocol negotiated, as net/http's client sees it.
					res, err := h2.Get(url + "/connectkit.ping.v1.PingService/Ping?encoding=json&message=%7B%7D")
					if withCert {
						if err != nil {
							t.Fatalf("GET: %v", err)
						}
						res.Body.Close()
						if res.ProtoMajor != 2 {
							t.Errorf("a client offering h2 got HTTP/%d.%d", res.ProtoMajor, res.ProtoMinor)
						}
					}

					conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(pki.clientTLS(withCert))))
					if err != nil {
						t.Fatal(err)
					}
					hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
					switch {
					case withCert && (err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING):
						t.Errorf("grpc-go health Check = %v, %v; want SERVING", hc, err)
					case !withCert && err == nil:
						t.Errorf("grpc-go health Check without a client certificate = %v, want an error", hc)
					}
					var out pingv1.PingResponse
					err = conn.Invoke(t.Context(), pingv1connect.PingServicePingProcedure, &pingv1.PingRequest{Number: 9}, &out)
					if withCert && (err != nil || out.GetNumber() != 9) {
						t.Errorf("grpc-go Ping = %v, %v", out.GetNumber(), err)
					}
					_ = conn.Close()
				}
			})
		}
	}
}

// A TLS config without any certificate fails at New, rather than every
// handshake (with frame batching) or Run (without).
func TestWithTLSConfigWithoutCertificateFailsAtNew(t *testing.T) {
	t.Parallel()
	_, err := kit.New(kit.Config{AdminAddr: kit.AdminOff}, kit.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	if err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Fatalf("New = %v, want an error saying the config has no certificate", err)
	}
}

// peerServer answers Ping with the common name of the client certificate
// that kit.TLSFrom shows the handler ("cleartext" when it shows none), and
// puts what an interceptor saw in the response header Interceptor-Peer.
type peerServer struct{ pingServer }

func (p *peerServer) Ping(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Text: peerName(ctx)}), nil
}

func peerName(ctx context.Context) string {
	state := kit.TLSFrom(ctx)
	switch {
	case state == nil:
		return "cleartext"
	case len(state.PeerCertificates) == 0:
		return "no certificate"
	}
	return state.PeerCertificates[0].Subject.CommonName
}

// Handlers and interceptors see the client's verified certificate through
// kit.TLSFrom, over every protocol and HTTP version, with frame batching
// on and off; over cleartext TLSFrom is nil.
func TestTLSFromShowsClientCertificate(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	sawPeer := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			res, err := next(ctx, req)
			if err == nil {
				res.Header().Set("Interceptor-Peer", peerName(ctx))
			}
			return res, err
		}
	})
	mount := func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&peerServer{}, srv.HandlerOptions()...))
	}
	for _, noBatching := range []bool{false, true} {
		t.Run(map[bool]string{false: "batching", true: "no batching"}[noBatching], func(t *testing.T) {
			t.Parallel()
			srv := kittest.NewServer(t, kit.Config{NoFrameBatching: noBatching}, mount,
				kit.WithTLSConfig(pki.mTLSConfig("Certificates")), kit.WithInterceptors(sawPeer))
			url := "https://" + srv.Addr().String()
			h2, h1 := tlsClients(t, pki.clientTLS(true))
			for _, tc := range tlsProtocols(h2, h1) {
				res, err := pingv1connect.NewPingServiceClient(tc.Client, url, tc.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
				if err != nil {
					t.Fatalf("%s: Ping = %v", tc.Name, err)
				}
				if got := res.Msg.GetText(); got != "client" {
					t.Errorf("%s: the handler saw %q, want the client certificate's name", tc.Name, got)
				}
				if got := res.Header().Get("Interceptor-Peer"); got != "client" {
					t.Errorf("%s: the interceptor saw %q, want the client certificate's name", tc.Name, got)
				}
			}
		})
	}
	t.Run("cleartext", func(t *testing.T) {
		t.Parallel()
		srv := kittest.NewServer(t, kit.Config{}, mount)
		for _, p := range srv.Protocols() {
			res, err := pingv1connect.NewPingServiceClient(p.Client, srv.URL, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
			if err != nil || res.Msg.GetText() != "cleartext" {
				t.Errorf("%s: Ping = %v, %v; want TLSFrom nil", p.Name, res, err)
			}
		}
	})
}

// A graceful shutdown over mutual TLS, with frame batching on the HTTP/2
// connections: calls in flight over HTTP/2 (gRPC) and HTTP/1.1 (Connect
// JSON) finish, new connections are refused, and Run returns nil.
func TestGracefulShutdownOverMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	svc := &countingPing{block: make(chan struct{}), entered: make(chan struct{}, 2)}
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(svc, srv.HandlerOptions()...))
	}, kit.WithTLSConfig(pki.mTLSConfig("Certificates")))
	url := "https://" + srv.Addr().String()
	h2, h1 := tlsClients(t, pki.clientTLS(true))

	results := make(chan error, 2)
	for _, c := range []pingv1connect.PingServiceClient{
		pingv1connect.NewPingServiceClient(h2, url, connect.WithGRPC()),
		pingv1connect.NewPingServiceClient(h1, url, connect.WithProtoJSON()),
	} {
		go func() {
			res, err := c.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 5}))
			if err == nil && res.Msg.GetNumber() != 5 {
				err = errors.New("wrong answer")
			}
			results <- err
		}()
	}
	<-svc.entered
	<-svc.entered
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()
	for {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		select {
		case err := <-stopped:
			t.Fatalf("Run returned %v with calls in flight", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(svc.block)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("in-flight call: %v", err)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// countingPing's Ping sends on entered, then waits for block.
type countingPing struct {
	pingServer
	entered chan struct{}
	block   chan struct{}
}

func (p *countingPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	p.entered <- struct{}{}
	select {
	case <-p.block:
	case <-ctx.Done():
		return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
	}
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

// Under TLS the kubelet's built-in gRPC probe, which speaks cleartext, fails
// on the main port, and the admin listener's /readyz, cleartext on a port
// of its own, answers: what the README's Kubernetes section advises.
func TestProbesUnderMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	srv := newPingServer(t, kit.Config{AdminAddr: "127.0.0.1:0"}, nil, kit.WithTLSConfig(pki.mTLSConfig("Certificates")))
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("a cleartext gRPC health Check succeeded against a TLS port")
	}
	res, err := http.Get(srv.AdminURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %s", res.Status)
	}
}

// tlsProtocols are the ways a connect client calls a TLS server with h2,
// an HTTP/2 client, and h1, an HTTP/1.1 one.
func tlsProtocols(h2, h1 *http.Client) []kittest.Protocol {
	return []kittest.Protocol{
		{Name: "grpc", Client: h2, Options: []connect.ClientOption{connect.WithGRPC()}},
		{Name: "grpcweb/h2", Client: h2, Options: []connect.ClientOption{connect.WithGRPCWeb()}},
		{Name: "connect/h2", Client: h2},
		{Name: "grpcweb/http1", Client: h1, Options: []connect.ClientOption{connect.WithGRPCWeb()}},
		{Name: "connect+json/http1", Client: h1, Options: []connect.ClientOption{connect.WithProtoJSON()}},
	}
}
