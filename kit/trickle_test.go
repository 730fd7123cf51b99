package kit_test

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
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
			conn := srv.Dial(t)
			if _, err := io.WriteString(conn, tc.request); err != nil {
				t.Fatal(err)
			}
			// The deadline only ends a test whose server never answers.
			br := bufio.NewReader(conn)
			res, _ := readRawResponse(t, conn, br)
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
			conn := srv.Dial(t)
			br := bufio.NewReader(conn)
			for i := range 2 {
				if _, err := io.WriteString(conn, tc.request); err != nil {
					t.Fatal(err)
				}
				res, got := readRawResponse(t, conn, br)
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
