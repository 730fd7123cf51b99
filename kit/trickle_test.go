package kit_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// An HTTP/1.1 request whose handler answers without reading its body, the
// body then trickling or stalling, is answered and its connection closed
// once KIT_READ_HEADER_TIMEOUT has passed after the handler returned:
// net/http reads up to 256 KiB of an unread body before it writes the
// response, to keep the connection, and without a read deadline that read
// waited on the client for good, with the connection and its goroutine
// (for a request expecting 100-continue, after the response).
func TestUnreadTrickledBodyIsCut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{
			// Vanguard flushes the response, and so net/http reads the
			// body, before the handler returns.
			name:    "REST GET with a body",
			request: "GET /v1/ping/7 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"number\":",
			status:  http.StatusOK,
		},
		{
			name:    "404",
			request: "POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
			status:  http.StatusNotFound,
		},
		{
			name:    "REST 405",
			request: "PUT /v1/ping/7 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
			status:  http.StatusMethodNotAllowed,
		},
		{
			name:    "chunked inside a chunk",
			request: "POST /nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"number\":",
			status:  http.StatusNotFound,
		},
		{
			name:    "chunked between chunks",
			request: "POST /nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
			status:  http.StatusNotFound,
		},
		{
			name:    "chunked with nothing sent",
			request: "POST /nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
			status:  http.StatusNotFound,
		},
		{
			// net/http closes such a connection, but first reads the body
			// it never asked for.
			name:    "Expect 100-continue",
			request: "POST /nothing HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n{",
			status:  http.StatusNotFound,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newPingServer(t, kit.Config{CallTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond}, nil)
			var br *bufio.Reader
			var res *http.Response
			pastTimeout(t, 300*time.Millisecond, "the request", func() (err error) {
				_, br, res, _, err = rawRequest(t, srv, tc.request)
				return err
			})
			if res.StatusCode != tc.status {
				t.Errorf("status %d, want %d", res.StatusCode, tc.status)
			}
			_, err := io.Copy(io.Discard, br)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the connection is still open after its response")
			} else if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("reading the connection: %v, want its end", err)
			}
		})
	}
}

// A body that its handler leaves unread but that has arrived whole, and a
// body read to its end, keep their connection for the next request.
func TestUnreadWholeBodyKeepsTheConnection(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{CallTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond}, nil)
	for _, tc := range []struct{ name, request string }{
		{"REST GET with a body", "GET /v1/ping/7 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
		{"404 chunked", "POST /nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"},
		{"REST POST", "POST /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"number\":7}\n"},
		{"REST POST chunked", "POST /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n{\"number\":7}\n\r\n0\r\n\r\n"},
		{"Connect POST", "POST /connectkit.ping.v1.PingService/Ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conn net.Conn
			var br *bufio.Reader
			var res *http.Response
			var got []byte
			pastTimeout(t, 300*time.Millisecond, "request 0", func() (err error) {
				conn, br, res, got, err = rawRequest(t, srv, tc.request)
				return err
			})
			for i := range 2 {
				if i > 0 {
					// The timeout of a connection's next request starts
					// when its first bytes arrive.
					if _, err := io.WriteString(conn, tc.request); err != nil {
						t.Fatal(err)
					}
					res, got = readRawResponse(t, conn, br)
				}
				if res.StatusCode >= 500 || res.Close {
					t.Fatalf("request %d: %d %q, close %v, want the connection kept", i, res.StatusCode, got, res.Close)
				}
				if strings.Contains(string(got), "canceled") {
					t.Fatalf("request %d: %q", i, got)
				}
			}
		})
	}
}

// rawRequest dials srv, writes request, an HTTP/1.1 request, on the new
// connection and reads its response and body (see [rawResponse]). The
// server's header timeout, the test's try to [pastTimeout], starts when it
// accepts the connection, before the write.
func rawRequest(t *testing.T, srv *kittest.Server, request string) (net.Conn, *bufio.Reader, *http.Response, []byte, error) {
	t.Helper()
	conn := srv.Dial(t)
	if _, err := io.WriteString(conn, request); err != nil {
		return nil, nil, nil, nil, err
	}
	br := bufio.NewReader(conn)
	res, body, err := rawResponse(conn, br)
	return conn, br, res, body, err
}

// Over HTTP/2 the same requests, their body trickled after the headers, are
// answered at once and their streams reset by net/http (RST_STREAM, as RFC
// 9113 8.1 lets a server that has answered a request whose body has not
// ended): nothing waits on the rest of the body, and the connection serves
// the next request.
func TestUnreadTrickledBodyHTTP2(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, method, path string
		status             string
	}{
		{"REST GET with a body", http.MethodGet, "/v1/ping/7", "200"},
		{"404", http.MethodPost, "/nothing", "404"},
		{"REST 405", http.MethodPut, "/v1/ping/7", "405"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newPingServer(t, kit.Config{CallTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond}, nil)
			// The server's header timeout, started when it accepted the
			// connection, bounds the preface: once its SETTINGS come, the
			// connection is HTTP/2's, without that timeout.
			var fr *http2.Framer
			pastTimeout(t, 300*time.Millisecond, "the preface", func() error {
				conn := srv.Dial(t)
				// The deadline only ends a test whose server never answers.
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
					return err
				}
				fr = http2.NewFramer(conn, conn)
				if err := fr.WriteSettings(); err != nil {
					return err
				}
				f, err := nextFrame(fr)
				if _, ok := f.(*http2.SettingsFrame); err == nil && !ok {
					t.Fatalf("the server's first frame: %v, want SETTINGS", f)
				}
				return err
			})
			headers := func(stream uint32, method, path string, endStream bool) {
				t.Helper()
				var block bytes.Buffer
				enc := hpack.NewEncoder(&block)
				for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "kit"}, {":path", path}, {"content-type", "application/json"}, {"content-length", "100"}} {
					if endStream && f[0] == "content-length" {
						continue
					}
					_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: endStream}); err != nil {
					t.Fatal(err)
				}
			}
			headers(1, tc.method, tc.path, false)
			if err := fr.WriteData(1, false, []byte(`{"number":`)); err != nil {
				t.Fatal(err)
			}
			fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			var status string
			var ended, reset bool
			for !reset || !ended {
				f, err := nextFrame(fr)
				if err != nil {
					t.Fatalf("%v; status %q, ended %v, reset %v; want the response and RST_STREAM", err, status, ended, reset)
				}
				switch f := f.(type) {
				case *http2.MetaHeadersFrame:
					if f.StreamID == 1 && status == "" {
						status = f.PseudoValue("status")
					}
					ended = ended || f.StreamEnded()
				case *http2.DataFrame:
					ended = ended || f.StreamEnded()
				case *http2.RSTStreamFrame:
					reset = f.StreamID == 1
				case *http2.GoAwayFrame:
					t.Fatalf("GOAWAY %v", f.ErrCode)
				}
			}
			if status != tc.status {
				t.Errorf("status %q, want %q", status, tc.status)
			}
			// The rest of the body, late, is dropped; the next request is
			// served.
			_ = fr.WriteData(1, true, []byte(`7}`))
			headers(3, http.MethodGet, "/v1/ping/8", true)
			for {
				f, err := nextFrame(fr)
				if err != nil {
					t.Fatalf("%v, want the response on stream 3", err)
				}
				if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 3 {
					if got := h.PseudoValue("status"); got != "200" {
						t.Errorf("the next request: status %q, want 200", got)
					}
					return
				}
				if g, ok := f.(*http2.GoAwayFrame); ok {
					t.Fatalf("GOAWAY %v", g.ErrCode)
				}
			}
		})
	}
}

// nextFrame reads fr's next frame, acknowledging the server's SETTINGS
// and answering its PINGs on the way, as a client must.
func nextFrame(fr *http2.Framer) (http2.Frame, error) {
	f, err := fr.ReadFrame()
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			_ = fr.WriteSettingsAck()
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			_ = fr.WritePing(true, f.Data)
		}
	}
	return f, err
}

// A handler that hijacks an HTTP/1.1 connection whose request body it has
// not read to its end owns the connection afterwards: kit's bound on the
// unread body (KIT_READ_HEADER_TIMEOUT) does not cut its reads.
func TestUnreadBodyOfHijackedConnection(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{ReadHeaderTimeout: 100 * time.Millisecond}, func(s *kit.Server) {
		s.Mount("/hijack/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			go func() { // echoes each line until the client leaves
				defer conn.Close()
				for {
					line, err := rw.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = rw.WriteString(line)
					_ = rw.Flush()
				}
			}()
		}))
	})
	// The header timeout also bounds the request's headers, which a
	// loaded machine can make the server read too late.
	var conn net.Conn
	var br *bufio.Reader
	pastTimeout(t, 100*time.Millisecond, "the hijacking request", func() error {
		conn = srv.Dial(t)
		if _, err := io.WriteString(conn, "POST /hijack/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nfirst\n"); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // only ends a test whose server never answers
		br = bufio.NewReader(conn)
		if line, err := br.ReadString('\n'); line != "first\n" {
			return fmt.Errorf("%q, %v, want the first line echoed", line, err)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // past the bound kit gives an unread body
	if _, err := io.WriteString(conn, "second\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); line != "second\n" {
		t.Errorf("%q, %v, want the second line echoed: the hijacked connection was cut", line, err)
	}
}
