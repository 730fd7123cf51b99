package natsjs_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/connectkit/connectkit/internal/testcert"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// An external cluster that speaks TLS with its own certificate authority
// and verifies its clients takes natsjs with NATS_TLS_CA, NATS_TLS_CERT and
// NATS_TLS_KEY, and refuses it without them.
func TestExternalClusterOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cl := newTLSCluster(t, dir)
	caFile, certFile, keyFile := cl.caFile, cl.certFile, cl.keyFile
	srv := natsjs.StartTestServer(t, cl.options(0, ""))
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)
	for _, tc := range []struct {
		name string
		cfg  natsjs.Config
		want string // "" for success
	}{
		{"ca and client cert", natsjs.Config{URL: url, TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile}, ""},
		{"no client cert", natsjs.Config{URL: url, TLSCAFile: caFile}, "failed to connect"},
		{"no ca", natsjs.Config{URL: url, TLSCertFile: certFile, TLSKeyFile: keyFile}, "certificate"},
		{"missing ca file", natsjs.Config{URL: url, TLSCAFile: filepath.Join(dir, "nope.pem")}, "nope.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			b, err := natsjs.New(ctx, tc.cfg)
			if err == nil {
				defer b.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New = %v, want a broker", err)
			case tc.want == "":
				if err := b.Check(ctx); err != nil {
					t.Errorf("Check = %v", err)
				}
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// After the cluster's server restarts, natsjs reconnects over TLS with its
// client certificate, and publishes again.
func TestExternalClusterOverTLSReconnects(t *testing.T) {
	t.Parallel()
	cl := newTLSCluster(t, t.TempDir())
	caFile, certFile, keyFile, opts := cl.caFile, cl.certFile, cl.keyFile, cl.options
	store := t.TempDir()
	first := natsjs.StartTestServer(t, opts(0, store))
	port := first.Addr().(*net.TCPAddr).Port
	url := strings.Replace(first.ClientURL(), "nats://", "tls://", 1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := natsjs.New(ctx, natsjs.Config{URL: url, TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Publish(ctx, &pubsub.Message{ID: "m1", Topic: "tls.reconnect", Data: []byte("1")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	first.Shutdown()
	first.WaitForShutdown()
	natsjs.StartTestServer(t, opts(port, store))
	for b.Conn().Status() != nats.CONNECTED {
		select {
		case <-ctx.Done():
			t.Fatalf("not reconnected: %v", b.Conn().Status())
		case <-time.After(50 * time.Millisecond):
		}
	}
	state, err := b.Conn().TLSConnectionState()
	if err != nil || !state.HandshakeComplete {
		t.Fatalf("reconnected without TLS: %v", err)
	}
	// As a readiness probe does: a request sent while the restarted server
	// recovers its JetStream store can go unanswered (seen once in a full
	// make test: one AccountInfo waited out the test's 30s), the next is
	// answered.
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		err := b.Check(attempt)
		cancelAttempt()
		if err == nil {
			break
		}
		// Not at once: a Check that fails without waiting (no responders
		// while JetStream starts, the connection not CONNECTED) would
		// send AccountInfo requests back to back until the deadline.
		select {
		case <-ctx.Done():
			t.Fatalf("Check after reconnect = %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := b.Publish(ctx, &pubsub.Message{ID: "m2", Topic: "tls.reconnect", Data: []byte("2")}); err != nil {
		t.Errorf("Publish after reconnect: %v", err)
	}
}

// tlsCluster is a certificate authority, a server certificate it issued,
// and its certificate and a client's key pair written to files.
type tlsCluster struct {
	ca                        *testcert.Authority
	server                    tls.Certificate
	caFile, certFile, keyFile string
}

func newTLSCluster(t *testing.T, dir string) *tlsCluster {
	t.Helper()
	ca, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	c := &tlsCluster{ca: ca}
	if c.server, err = ca.Issue("server"); err != nil {
		t.Fatal(err)
	}
	if c.caFile, err = ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	if c.certFile, c.keyFile, err = ca.WriteFiles(dir, "client"); err != nil {
		t.Fatal(err)
	}
	return c
}

// options are a server's that speaks TLS and verifies its clients.
func (c *tlsCluster) options(port int, store string) *server.Options {
	return &server.Options{
		Port: port, StoreDir: store, TLS: true, TLSVerify: true, TLSTimeout: 5,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{c.server},
			ClientCAs:    c.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		},
	}
}
