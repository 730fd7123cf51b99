package conformance

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	conformancev1 "github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1"
)

// ServerTLSConfig returns the TLS configuration req asks for: nil when
// use_tls is false, otherwise the runner's server certificate and, when req
// carries a client certificate, mandatory client authentication against it.
// The caller reports req.ServerCreds.Cert back as the server's certificate.
func ServerTLSConfig(req *conformancev1.ServerCompatRequest) (*tls.Config, error) {
	if !req.GetUseTls() {
		if len(req.GetClientTlsCert()) > 0 {
			return nil, errors.New("client_tls_cert is set but use_tls is false")
		}
		return nil, nil
	}
	creds := req.GetServerCreds()
	if len(creds.GetCert()) == 0 || len(creds.GetKey()) == 0 {
		return nil, errors.New("use_tls is true but server_creds lacks a certificate or key")
	}
	cert, err := tls.X509KeyPair(creds.GetCert(), creds.GetKey())
	if err != nil {
		return nil, fmt.Errorf("failed to load server_creds: %w", err)
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	if pem := req.GetClientTlsCert(); len(pem) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("client_tls_cert holds no PEM certificate")
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}
