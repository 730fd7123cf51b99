// Package testcert makes the certificates of tests and benchmarks: an
// authority of its own and the certificates it issues for 127.0.0.1, in
// memory or as PEM files.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Authority is a certificate authority valid for a day.
type Authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

// New makes an authority.
func New() (*Authority, error) {
	cert, key, err := issue("testcert authority", nil, nil, time.Now().Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	return &Authority{cert: cert, key: key}, nil
}

// Pool is a pool that trusts the authority.
func (a *Authority) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(a.cert)
	return pool
}

// Issue makes a certificate for 127.0.0.1, for servers and clients alike,
// valid from an hour ago for a day.
func (a *Authority) Issue(name string) (tls.Certificate, error) {
	return a.IssueUntil(name, time.Now().Add(24*time.Hour))
}

// IssueUntil is Issue for a certificate that expires at notAfter (in the
// past, for an expired one).
func (a *Authority) IssueUntil(name string, notAfter time.Time) (tls.Certificate, error) {
	cert, key, err := issue(name, a.cert, a.key, notAfter)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// WriteFiles issues a certificate as Issue does and writes it and its key
// as PEM into dir, as name.pem and name-key.pem.
func (a *Authority) WriteFiles(dir, name string) (certFile, keyFile string, err error) {
	cert, err := a.Issue(name)
	if err != nil {
		return "", "", err
	}
	return WriteFiles(dir, name, cert)
}

// WriteFiles writes cert and its key as PEM into dir, as name.pem and
// name-key.pem.
func WriteFiles(dir, name string, cert tls.Certificate) (certFile, keyFile string, err error) {
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := writePEM(certFile, "CERTIFICATE", cert.Certificate[0]); err != nil {
		return "", "", err
	}
	return certFile, keyFile, writePEM(keyFile, "EC PRIVATE KEY", keyDER)
}

// WriteCA writes the authority's certificate as PEM into dir, as ca.pem.
func (a *Authority) WriteCA(dir string) (string, error) {
	file := filepath.Join(dir, "ca.pem")
	return file, writePEM(file, "CERTIFICATE", a.cert.Raw)
}

func writePEM(file, kind string, der []byte) error {
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

// issue makes a certificate signed by parent, or a self-signed authority
// when parent is nil.
func issue(name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notAfter.Add(-25 * time.Hour),
		NotAfter:     notAfter,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}
