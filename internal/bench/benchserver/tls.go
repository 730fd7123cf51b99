package main

import (
	"crypto/tls"

	"github.com/connectkit/connectkit/internal/testcert"
)

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned() (tls.Certificate, error) {
	ca, err := testcert.New()
	if err != nil {
		return tls.Certificate{}, err
	}
	return ca.Issue("benchserver")
}
