package kit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/connectkit/connectkit/internal/connctx"
)

// withNextProtos wraps a tls.Config's GetConfigForClient so that the
// configs it returns without NextProtos offer HTTP/2 and HTTP/1.1 by ALPN.
// A returned config replaces the server's for the handshake, NextProtos
// included, and net/http adds "h2" to its own config only: without this, a
// config that rotates certificates or picks them per client negotiates no
// protocol, so clients fall back to HTTP/1.1 (no bidi streams) or fail, as
// grpc-go does ("missing selected ALPN property"). A config that lists its
// own NextProtos keeps them.
func withNextProtos(next func(*tls.ClientHelloInfo) (*tls.Config, error)) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cfg, err := next(hello)
		if cfg == nil || err != nil || len(cfg.NextProtos) > 0 {
			return cfg, err
		}
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		return cfg, nil
	}
}

// TLSFrom returns the TLS state of the connection that the call ctx belongs
// to came over. It is what net/http's Request.TLS gives to HTTP handlers: the
// negotiated version and protocol and, under mutual TLS, the client's
// verified chain (PeerCertificates[0] is the client's certificate). connect
// shows handlers and interceptors no *http.Request, and its Peer carries no
// certificate. It returns nil over cleartext and for a ctx that is no call's
// of a [Server] (a pubsub delivery's, say). Each call copies the state.
func TLSFrom(ctx context.Context) *tls.ConnectionState {
	c := connctx.FromContext(ctx)
	if c == nil || c.TLS == nil {
		return nil
	}
	state := c.TLS.ConnectionState()
	if !state.HandshakeComplete {
		return nil
	}
	return &state
}

// keyPairFiles serves the key pair of [Config.TLSCertFile] and
// [Config.TLSKeyFile] as a tls.Config's GetCertificate, and reloads it when
// either file changes (its modification time, size, or the file itself), so that a
// certificate renewed on disk (cert-manager, a Kubernetes Secret's volume,
// certbot) is served to the next handshakes without a restart. Each
// handshake stats both files. A pair that does not load (a key that does
// not match the certificate, as while one file is replaced before the
// other, or an expired certificate) leaves the previous one in service and
// is logged once, and retried as soon as a file changes again.
type keyPairFiles struct {
	certFile, keyFile string
	certEnv, keyEnv   string // the variables that named them, for errors
	logger            *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	stamps [2]fileStamp // of the files the last load read
}

// fileStamp is what tells a file changed: its modification time and size,
// and the file itself (a renewal that renames a new file over the old one
// within the kernel's timestamp granularity, a few milliseconds, with a
// certificate of the same size, changes only that).
type fileStamp struct {
	mod  time.Time
	size int64
	fi   os.FileInfo
}

func (a fileStamp) same(b fileStamp) bool {
	if a.fi == nil || b.fi == nil {
		return a.fi == nil && b.fi == nil
	}
	return a.mod.Equal(b.mod) && a.size == b.size && os.SameFile(a.fi, b.fi)
}

// newKeyPairFiles loads the pair of files that the variables certEnv and
// keyEnv name.
func newKeyPairFiles(certEnv, certFile, keyEnv, keyFile string, logger *slog.Logger) (*keyPairFiles, error) {
	k := &keyPairFiles{certFile: certFile, keyFile: keyFile, certEnv: certEnv, keyEnv: keyEnv, logger: logger}
	k.stamps = k.stat()
	cert, err := k.load()
	if err != nil {
		return nil, err
	}
	k.cert = cert
	return k, nil
}

func (k *keyPairFiles) stat() [2]fileStamp {
	var stamps [2]fileStamp
	for i, name := range []string{k.certFile, k.keyFile} {
		if fi, err := os.Stat(name); err == nil {
			stamps[i] = fileStamp{mod: fi.ModTime(), size: fi.Size(), fi: fi}
		}
	}
	return stamps
}

// load reads the key pair and refuses an expired certificate, with an
// error that names the files.
func (k *keyPairFiles) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("kit: TLS key pair (%s=%q, %s=%q): %w", k.certEnv, k.certFile, k.keyEnv, k.keyFile, err)
	}
	if cert.Leaf == nil {
		// GODEBUG=x509keypairleaf=0 leaves it unparsed: the expiry check
		// and the reload's log line need it.
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("kit: TLS certificate (%s=%q): %w", k.certEnv, k.certFile, err)
		}
	}
	if leaf := cert.Leaf; time.Now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("kit: TLS certificate (%s=%q) expired at %s",
			k.certEnv, k.certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

// getCertificate is the tls.Config's GetCertificate.
func (k *keyPairFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	stamps := k.stat()
	k.mu.Lock()
	defer k.mu.Unlock()
	if stamps[0].same(k.stamps[0]) && stamps[1].same(k.stamps[1]) {
		return k.cert, nil
	}
	k.stamps = stamps
	cert, err := k.load()
	if err != nil {
		k.logger.Error("TLS key pair changed but does not load: serving the previous one", "error", err)
		return k.cert, nil
	}
	k.cert = cert
	k.logger.Info("TLS key pair reloaded", "cert_file", k.certFile, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return k.cert, nil
}
