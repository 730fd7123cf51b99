package kit_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/testcert"
	"github.com/connectkit/connectkit/kit"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns their paths and a pool trusting the certificate's authority.
func selfSigned(tb testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	tb.Helper()
	ca, err := testcert.New()
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile, err = ca.WriteFiles(dir, "server")
	if err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile, ca.Pool()
}

func TestTLSNegotiatesHTTP2AndServesHTTP1(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	srv := newPingServer(t, kit.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, nil)

	for _, tc := range []struct {
		name      string
		protocols func(*http.Protocols)
		opts      []connect.ClientOption
		wantProto int
	}{
		{name: "grpc over h2", protocols: func(p *http.Protocols) { p.SetHTTP2(true) }, opts: []connect.ClientOption{connect.WithGRPC()}, wantProto: 2},
		{name: "connect over http1", protocols: func(p *http.Protocols) { p.SetHTTP1(true) }, wantProto: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var protocols http.Protocols
			tc.protocols(&protocols)
			client := &http.Client{Transport: &http.Transport{
				Protocols:       &protocols,
				TLSClientConfig: &tls.Config{RootCAs: pool},
			}}
			t.Cleanup(client.CloseIdleConnections)
			res, err := newPingClient(srv, client, tc.opts...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 8}))
			if err != nil || res.Msg.GetNumber() != 8 {
				t.Fatalf("Ping = %v, %v", res, err)
			}
			// Ask the server which protocol it saw.
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/connectkit.ping.v1.PingService/Ping?encoding=json&message=%7B%7D", nil)
			httpRes, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			httpRes.Body.Close()
			if httpRes.ProtoMajor != tc.wantProto {
				t.Errorf("HTTP/%d, want HTTP/%d", httpRes.ProtoMajor, tc.wantProto)
			}
		})
	}
}

func TestTLSBadKeyPairFailsAtNew(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := kit.New(kit.Config{TLSCertFile: filepath.Join(dir, "missing.pem"), TLSKeyFile: filepath.Join(dir, "missing-key.pem")})
	if err == nil {
		t.Fatal("New accepted a missing key pair")
	}
	for _, want := range []string{"KIT_TLS_CERT_FILE", "missing.pem"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// servedSerial returns the serial number of the certificate the server at
// addr shows in a new handshake.
func servedSerial(tb testing.TB, addr string, pool *x509.CertPool) string {
	tb.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		tb.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// replaceKeyPair writes cert into certFile and keyFile at once, as a
// Kubernetes Secret's volume or cert-manager does (new files renamed over
// the old ones).
func replaceKeyPair(tb testing.TB, certFile, keyFile string, cert tls.Certificate) {
	tb.Helper()
	newCert, newKey, err := testcert.WriteFiles(tb.TempDir(), "renewed", cert)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(newCert, certFile); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(newKey, keyFile); err != nil {
		tb.Fatal(err)
	}
}

// A key pair renewed on disk is served to the next handshakes without a
// restart, over every protocol; one that does not load (a key that does
// not match, an expired certificate) leaves the previous one in service.
func TestTLSKeyPairFilesReloadWhenTheyChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	first, err := ca.Issue("server")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := testcert.WriteFiles(dir, "server", first)
	if err != nil {
		t.Fatal(err)
	}
	srv := newPingServer(t, kit.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, nil)
	addr := srv.Addr().String()
	serial := func(c tls.Certificate) string { return c.Leaf.SerialNumber.String() }
	if got := servedSerial(t, addr, ca.Pool()); got != serial(first) {
		t.Fatalf("served certificate %s, want the file's %s", got, serial(first))
	}

	renewed, err := ca.Issue("server")
	if err != nil {
		t.Fatal(err)
	}
	replaceKeyPair(t, certFile, keyFile, renewed)
	if got := servedSerial(t, addr, ca.Pool()); got != serial(renewed) {
		t.Fatalf("after renewal, served certificate %s, want the renewed %s", got, serial(renewed))
	}
	var h2 http.Protocols
	h2.SetHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &h2, TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	t.Cleanup(client.CloseIdleConnections)
	if _, err := newPingClient(srv, client, connect.WithGRPC()).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatalf("gRPC Ping after renewal: %v", err)
	}

	// A certificate whose key is another's: the renewed pair stays.
	other, err := ca.Issue("other")
	if err != nil {
		t.Fatal(err)
	}
	mismatched := tls.Certificate{Certificate: first.Certificate, PrivateKey: other.PrivateKey}
	replaceKeyPair(t, certFile, keyFile, mismatched)
	if got := servedSerial(t, addr, ca.Pool()); got != serial(renewed) {
		t.Errorf("after a mismatched pair, served %s, want the renewed %s still", got, serial(renewed))
	}
	expired, err := ca.IssueUntil("server", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	replaceKeyPair(t, certFile, keyFile, expired)
	if got := servedSerial(t, addr, ca.Pool()); got != serial(renewed) {
		t.Errorf("after an expired pair, served %s, want the renewed %s still", got, serial(renewed))
	}
	// And a good pair again is taken.
	third, err := ca.Issue("server")
	if err != nil {
		t.Fatal(err)
	}
	replaceKeyPair(t, certFile, keyFile, third)
	if got := servedSerial(t, addr, ca.Pool()); got != serial(third) {
		t.Errorf("served %s, want the third pair's %s", got, serial(third))
	}
}

// An expired certificate, a key that is not the certificate's, or a file
// that is not PEM stop kit.New with an error naming the file and the
// problem, rather than a server whose every handshake fails.
func TestTLSBadKeyPairFilesFailAtNew(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, expiredCert, expiredKey := expiredPair(t, dir)
	goodCert, _, err := ca.WriteFiles(dir, "good")
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name              string
		certFile, keyFile string
		want              []string
	}{
		{name: "expired", certFile: expiredCert, keyFile: expiredKey, want: []string{"KIT_TLS_CERT_FILE", expiredCert, "expired at"}},
		{name: "key of another certificate", certFile: goodCert, keyFile: expiredKey, want: []string{"KIT_TLS_KEY_FILE", expiredKey, "private key does not match public key"}},
		{name: "not PEM", certFile: notPEM, keyFile: expiredKey, want: []string{"KIT_TLS_CERT_FILE", notPEM, "failed to find any PEM data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := kit.New(kit.Config{AdminAddr: kit.AdminOff, TLSCertFile: tc.certFile, TLSKeyFile: tc.keyFile})
			if err == nil {
				t.Fatal("New accepted the key pair")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestTLSKeyPairFilesWithoutLeaf runs with GODEBUG=x509keypairleaf=0, under
// which tls.LoadX509KeyPair leaves Certificate.Leaf nil: New must still
// refuse an expired certificate, and a renewed pair must still be served
// (logging its reload read Leaf.NotAfter, a nil dereference that failed
// the handshake). Not parallel: it sets GODEBUG for the process.
func TestTLSKeyPairFilesWithoutLeaf(t *testing.T) {
	t.Setenv("GODEBUG", "x509keypairleaf=0")
	dir := t.TempDir()
	ca, expiredCert, expiredKey := expiredPair(t, dir)
	if _, err := kit.New(kit.Config{AdminAddr: kit.AdminOff, TLSCertFile: expiredCert, TLSKeyFile: expiredKey}); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("New with an expired certificate: %v; want an error that says it expired", err)
	}

	first, err := ca.Issue("server")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := testcert.WriteFiles(dir, "server", first)
	if err != nil {
		t.Fatal(err)
	}
	srv := newPingServer(t, kit.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, nil)
	renewed, err := ca.Issue("server")
	if err != nil {
		t.Fatal(err)
	}
	replaceKeyPair(t, certFile, keyFile, renewed)
	conn, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("handshake after renewal: %v", err)
	}
	defer conn.Close()
	if got, want := conn.ConnectionState().PeerCertificates[0].SerialNumber, renewed.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("after renewal, served certificate %s, want the renewed %s", got, want)
	}
}

// expiredPair returns a new authority and the files, in dir, of a key pair
// it issued that expired an hour ago.
func expiredPair(t *testing.T, dir string) (ca *testcert.Authority, certFile, keyFile string) {
	t.Helper()
	ca, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.IssueUntil("server", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if certFile, keyFile, err = testcert.WriteFiles(dir, "expired", expired); err != nil {
		t.Fatal(err)
	}
	return ca, certFile, keyFile
}
