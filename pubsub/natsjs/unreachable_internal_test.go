package natsjs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestUnreachable: the errors of a first connection that New retries in
// the background are those of no server answering; a server that answers
// and refuses fails New.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{name: "every server refused", err: nats.ErrNoServers, want: true},
		{name: "name not resolved", err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nats", IsNotFound: true}}, want: true},
		{name: "dial timeout", err: &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, want: true},
		{name: "no INFO in time", err: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, want: true},
		{name: "closed by a proxy", err: io.EOF, want: true},
		{name: "reset by a proxy", err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, want: true},
		{name: "authorization", err: fmt.Errorf("nats: %w", nats.ErrAuthorization), want: false},
		{name: "TLS-first handshake timed out", err: fmt.Errorf("%w: %w", nats.ErrTLS, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), want: true},
		{name: "TLS-first handshake cut", err: fmt.Errorf("%w: %w", nats.ErrTLS, io.EOF), want: true},
		{name: "TLS-first handshake reset", err: fmt.Errorf("%w: %w", nats.ErrTLS, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), want: true},
		{name: "TLS certificate not verified", err: fmt.Errorf("%w: %w", nats.ErrTLS, &tls.CertificateVerificationError{Err: errors.New("x509: certificate signed by unknown authority")}), want: false},
		{name: "closed after the TLS handshake", err: fmt.Errorf("%w: connection closed by remote after TLS handshake: %w", nats.ErrTLS, io.EOF), want: false},
		{name: "certificate refused", err: &net.OpError{Op: "remote error", Err: tls.AlertError(42)}, want: false},
		{name: "TLS wanted", err: nats.ErrSecureConnWanted, want: false},
		{name: "no JetStream", err: errors.New("nats: jetstream not enabled"), want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := unreachable(tc.err); got != tc.want {
				t.Errorf("unreachable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
