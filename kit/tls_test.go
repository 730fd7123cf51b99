package kit_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

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
