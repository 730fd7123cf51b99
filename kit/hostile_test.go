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
		request  = "POST /connectkit.ping.v1.PingService/Ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	)
	for _, tc := range []struct {
		name    string
		tls     bool   // the server serves TLS
		alpn    string // the protocol the client's TLS handshake asks for; none if ""
		first   bool   // send request and read its response first
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
				var c net.Conn = srv.Dial(t)
				if tc.alpn != "" {
					conf := clientTLS.Clone()
					conf.NextProtos = []string{tc.alpn}
					tc := tls.Client(c, conf)
					if err := tc.Handshake(); err != nil {
						t.Fatal(err)
					}
					c = tc
				}
				br := bufio.NewReader(c)
				if tc.first {
					if _, err := io.WriteString(c, request); err != nil {
						t.Fatal(err)
					}
					res, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				if _, err := io.WriteString(c, tc.stalled); err != nil {
					t.Fatal(err)
				}
				// Another client is served meanwhile.
				other := srv.HTTP2Client()
				if tc.tls {
					protocols := new(http.Protocols)
					protocols.SetHTTP2(true)
					other = &http.Client{Transport: &http.Transport{Protocols: protocols, TLSClientConfig: clientTLS}}
					t.Cleanup(other.CloseIdleConnections)
				}
				if _, err := newPingClient(srv, other).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
					t.Errorf("another client's call: %v", err)
				}
				// Read what the server sends (an HTTP/1.1 error, HTTP/2
				// SETTINGS and GOAWAY, a TLS alert) until it closes the
				// connection. The deadline only ends a test whose server
				// never does.
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := io.Copy(io.Discard, br)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("the stalled connection is still open after 10s")
				} else if err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("reading the stalled connection: %v, want its end", err)
				}
			})
		}
	}
}
