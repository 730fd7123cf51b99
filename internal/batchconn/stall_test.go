package batchconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestEndToEndHTTP1StalledPeers holds the lazy deadlines (SetReadDeadline,
// a plain connection's SetWriteDeadline) to what net/http and kit need of
// them on HTTP/1.1, with real sockets and peers that stall: the idle and
// header timeouts close a silent connection, and the server's write
// timeout, a handler's write deadline (on a Write, and on a file that
// net/http sends by the connection's ReadFrom) and its body read deadline
// (set before the read, or while it is blocked) end a write to a peer that
// never reads and a read of a body that never comes.
func TestEndToEndHTTP1StalledPeers(t *testing.T) {
	t.Parallel()
	closes := []struct {
		name, send string
		tweak      func(*http.Server)
	}{
		{"idle timeout after a request", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
			func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond }},
		{"header timeout of the second request", "GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\n",
			shortenHeaderTimeoutAfterFirstRequest},
	}
	for _, tc := range closes {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, tc.tweak)
			c := dialStalled(t, ts, tc.send)
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("ReadAll = %v after %q; want the server to close the connection", err, got)
			}
			if n := strings.Count(string(got), "HTTP/1.1 404"); n != 1 {
				t.Errorf("got %q, want one 404 response, then the connection closed", got)
			}
			ts.requireModes(t, modePlain)
		})
	}

	handlers := []struct {
		name  string
		send  string
		tweak func(s *http.Server, done chan<- error)
	}{
		{"server write timeout, peer not reading", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", func(s *http.Server, done chan<- error) {
			s.WriteTimeout = 100 * time.Millisecond
			s.Handler = writeChunks(done, nil)
		}},
		{"handler write deadline, peer not reading", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", func(s *http.Server, done chan<- error) {
			s.Handler = writeChunks(done, func(rc *http.ResponseController) {
				_ = rc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			})
		}},
		{"handler write deadline, file sent by ReadFrom, peer not reading", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", func(s *http.Server, done chan<- error) {
			s.Handler = sendFile(done, bigFile(t))
		}},
		{"body read deadline set before the read", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789", func(s *http.Server, done chan<- error) {
			s.Handler = readBody(done, func(rc *http.ResponseController) {
				_ = rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			})
		}},
		{"body read deadline set during the read", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789", func(s *http.Server, done chan<- error) {
			s.Handler = readBody(done, func(rc *http.ResponseController) {
				time.AfterFunc(50*time.Millisecond, func() { _ = rc.SetReadDeadline(time.Now()) })
			})
		}},
	}
	for _, tc := range handlers {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			ts := newTestServer(t, func(s *http.Server) { tc.tweak(s, done) })
			dialStalled(t, ts, tc.send)
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("handler's I/O ended with %v, want a deadline's timeout", err)
				}
			case <-time.After(waitFor):
				t.Fatal("the handler's I/O did not end: the deadline never reached the socket")
			}
			ts.requireModes(t, modePlain)
		})
	}
}

// shortenHeaderTimeoutAfterFirstRequest gives the requests after the
// first one a 50ms header timeout, and the first one newTestServer's 10s:
// net/http starts the header timeout of a connection's first request when
// it accepts the connection, and the client sends only after its dial
// returns, so with 50ms from the start a loaded machine cut the first
// request before it was read (got "", about 1 run in 50 under load).
// net/http reads ReadHeaderTimeout for each request on the connection's
// goroutine, which is the one that runs an HTTP/1.1 handler, so the
// handler can change it for the next request without a race.
func shortenHeaderTimeoutAfterFirstRequest(s *http.Server) {
	next := s.Handler
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ReadHeaderTimeout = 50 * time.Millisecond
		next.ServeHTTP(w, r)
	})
}

// dialStalled connects to ts, sends send, and then neither sends nor reads
// until the test reads the returned connection.
func dialStalled(t *testing.T, ts *testServer, send string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, send); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	return c
}

// writeChunks is a handler that calls set, then writes until a write
// fails, and sends the error to done.
func writeChunks(done chan<- error, set func(*http.ResponseController)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if set != nil {
			set(http.NewResponseController(w))
		}
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for {
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
		}
	})
}

// bigFile returns a file larger than what loopback sockets buffer.
func bigFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(t.TempDir() + "/big")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	return f
}

// sendFile is a handler that sends the response's header, then sets a
// write deadline, which no write then gives the socket, and copies f to
// the response, which net/http hands to the connection's ReadFrom
// (sendfile); it sends the copy's error to done.
func sendFile(done chan<- error, f *os.File) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "67108864")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		if err := rc.Flush(); err != nil {
			done <- err
			return
		}
		_ = rc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := io.Copy(w, f)
		done <- err
	})
}

// readBody is a handler that calls set, then reads the request's body to
// its end and sends the error to done.
func readBody(done chan<- error, set func(*http.ResponseController)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set(http.NewResponseController(w))
		_, err := io.ReadAll(r.Body)
		done <- err
	})
}
