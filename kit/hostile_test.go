package kit_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// A client that connects and then stalls, before its headers (or its TLS
// handshake), between two requests or inside an HTTP/2 frame, loses its
// connection to the server's timeouts (KIT_READ_HEADER_TIMEOUT,
// KIT_IDLE_TIMEOUT), in cleartext and over TLS, with frame batching on and
// off (batchconn gives the socket these read deadlines lazily, when it is
// read), while another client is served. Bare net/http, whose IdleTimeout
// is zero, keeps an idle or half-frame connection open for good
// (BENCHMARKS.md section 8).
func TestStalledClientsLoseTheirConnections(t *testing.T) {
	t.Parallel()
	const (
		preface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
		settings = "\x00\x00\x00\x04\x00\x00\x00\x00\x00" // an empty SETTINGS frame
	)
	for _, tc := range []struct {
		name    string
		tls     bool   // the server serves TLS
		alpn    string // the protocol the client's TLS handshake asks for; none if ""
		first   bool   // send a Ping request and read its response first
		stalled string // then send this, and nothing more
	}{
		{name: "http1 headers cut short", stalled: "POST / HTTP/1.1\r\nHost: x\r\nX-A: a"},
		{name: "http1 idle after a request", first: true},
		{name: "http1 next headers cut short", first: true, stalled: "POST / HTTP/1.1\r\nHo"},
		{name: "h2c preface cut short", stalled: preface[:20]},
		{name: "h2c idle after its settings", stalled: preface + settings},
		{name: "h2c half a frame header", stalled: preface + settings + "\x00\x00\x0a\x01"},
		{name: "tls no handshake", tls: true},
		{name: "tls record header cut short", tls: true, stalled: "\x16\x03\x01"},
		{name: "tls http1 headers cut short", tls: true, alpn: "http/1.1", stalled: "POST / HTTP/1.1\r\nHo"},
		{name: "tls http1 idle after a request", tls: true, alpn: "http/1.1", first: true},
		{name: "tls h2 idle after its settings", tls: true, alpn: "h2", stalled: preface + settings},
		{name: "tls h2 half a frame header", tls: true, alpn: "h2", stalled: preface + settings + "\x00\x00\x0a\x01"},
	} {
		for _, batching := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/batching=%v", tc.name, batching), func(t *testing.T) {
				t.Parallel()
				cfg := kit.Config{
					ReadHeaderTimeout: 200 * time.Millisecond,
					IdleTimeout:       400 * time.Millisecond,
					NoFrameBatching:   !batching,
				}
				var clientTLS *tls.Config
				if tc.tls {
					certFile, keyFile, pool := selfSigned(t, t.TempDir())
					cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
					clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
				}
				srv := newPingServer(t, cfg, nil)
				// The server's timeouts also bound the test's own steps
				// (a TLS handshake, the first request, the other
				// client's call), which a loaded machine can stretch
				// past them.
				var c net.Conn
				var br *bufio.Reader
				pastTimeout(t, cfg.ReadHeaderTimeout, "the stalled connection", func() error {
					var err error
					c, br, err = stall(srv.Dial(t), clientTLS, tc.alpn, tc.first, tc.stalled)
					return err
				})
				// Another client is served meanwhile.
				pastTimeout(t, cfg.ReadHeaderTimeout, "another client's call", func() error {
					other := srv.HTTP2Client()
					if tc.tls {
						protocols := new(http.Protocols)
						protocols.SetHTTP2(true)
						tr := &http.Transport{Protocols: protocols, TLSClientConfig: clientTLS}
						defer tr.CloseIdleConnections()
						other = &http.Client{Transport: tr}
					}
					_, err := newPingClient(srv, other).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
					return err
				})
				// Read what the server sends (an HTTP/1.1 error, HTTP/2
				// SETTINGS and GOAWAY, a TLS alert) until it closes the
				// connection. The deadline only ends a test whose server
				// never does.
				_ = c.SetReadDeadline(time.Now().Add(time.Minute))
				_, err := io.Copy(io.Discard, br)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("the stalled connection is still open after a minute")
				} else if err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("reading the stalled connection: %v, want its end", err)
				}
			})
		}
	}
}

// stall makes c the stalled connection of a case of
// TestStalledClientsLoseTheirConnections: over TLS with alpn if alpn is
// not "", after one request and its response if first, then sends
// stalled. It returns the connection and a reader of what follows.
func stall(c net.Conn, clientTLS *tls.Config, alpn string, first bool, stalled string) (net.Conn, *bufio.Reader, error) {
	const request = "POST /connectkit.ping.v1.PingService/Ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	if alpn != "" {
		conf := clientTLS.Clone()
		conf.NextProtos = []string{alpn}
		tc := tls.Client(c, conf)
		if err := tc.Handshake(); err != nil {
			return nil, nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	br := bufio.NewReader(c)
	if first {
		if _, err := io.WriteString(c, request); err != nil {
			return nil, nil, fmt.Errorf("sending the first request: %w", err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the first response: %w", err)
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("reading the first response: %w", err)
		}
	}
	if _, err := io.WriteString(c, stalled); err != nil {
		return nil, nil, fmt.Errorf("sending %q: %w", stalled, err)
	}
	return c, br, nil
}

// pastTimeout runs try, a step that a server whose shortest timeout is d
// may cut, until it succeeds. A try that failed before d had passed since
// it started was not cut by the timeout and fails the test; one that
// failed later may have been (the server starts the timeout after the try
// starts), and runs again, for up to a minute: under -race on a loaded
// 2-core machine a TLS handshake took over 200ms.
func pastTimeout(t *testing.T, d time.Duration, what string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		start := time.Now()
		err := try()
		if err == nil {
			return
		}
		took := time.Since(start)
		if took < d || time.Now().After(deadline) {
			t.Fatalf("%s: %v (after %v)", what, err, took)
		}
		t.Logf("%s: %v after %v, which the server's timeout of %v may have cut: again", what, err, took, d)
	}
}
