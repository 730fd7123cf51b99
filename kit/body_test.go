package kit_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// A unary call whose body never arrives in full is cut at the call timeout
// (connect reads the body before the call's deadline applies), over
// HTTP/1.1 (also beneath TLS) and h2c, in Connect, gRPC and gRPC-Web alike,
// and its client is never told the server's socket addresses: over
// HTTP/1.1 the message says what happened, where it was the connection's
// read error, "read tcp 127.0.0.1:…->127.0.0.1:…: i/o timeout"; over
// HTTP/2 it stays net/http's "i/o timeout". A REST route's call, answered
// 504, is told the same.
func TestUnaryBodyThatNeverArrivesIsCut(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	srv := newPingServer(t, kit.Config{CallTimeout: timeout}, nil)
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	tlsSrv := newPingServer(t, kit.Config{CallTimeout: timeout, TLSCertFile: certFile, TLSKeyFile: keyFile}, nil)
	var http1 http.Protocols
	http1.SetHTTP1(true)
	tlsHTTP1 := &http.Client{Transport: &http.Transport{Protocols: &http1, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(tlsHTTP1.CloseIdleConnections)
	const path = "/connectkit.ping.v1.PingService/Ping"
	for _, tc := range []struct {
		name, contentType string
		path              string // Ping's if empty
		url               string // srv's if empty
		client            *http.Client
		partial           string // then nothing more
	}{
		{name: "connect/http1", contentType: "application/proto", client: srv.HTTP1Client(), partial: "\x08"},
		{name: "connect/h2c", contentType: "application/proto", client: srv.HTTP2Client(), partial: "\x08"},
		{name: "connect/http1+tls", contentType: "application/proto", client: tlsHTTP1, url: tlsSrv.URL, partial: "\x08"},
		{name: "grpc", contentType: "application/grpc", client: srv.HTTP2Client(), partial: "\x00\x00\x00"},
		{name: "grpc/no-data", contentType: "application/grpc", client: srv.HTTP2Client()},
		{name: "grpc-web/http1", contentType: "application/grpc-web", client: srv.HTTP1Client(), partial: "\x00\x00\x00"},
		{name: "grpc-web/h2c", contentType: "application/grpc-web", client: srv.HTTP2Client(), partial: "\x00\x00\x00"},
		// A server stream's request is one message too.
		{name: "server-stream", path: "/connectkit.ping.v1.PingService/CountUp", contentType: "application/connect+proto", client: srv.HTTP1Client(), partial: "\x00\x00"},
		// A REST route's body, which vanguard reads for Ping.
		{name: "rest/http1", path: "/v1/ping", contentType: "application/json", client: srv.HTTP1Client(), partial: `{"number":`},
		{name: "rest/h2c", path: "/v1/ping", contentType: "application/json", client: srv.HTTP2Client(), partial: `{"number":`},
		{name: "rest/http1+tls", path: "/v1/ping", contentType: "application/json", client: tlsHTTP1, url: tlsSrv.URL, partial: `{"number":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body, stall := io.Pipe()
			defer stall.Close()
			if tc.partial != "" {
				go func() { _, _ = io.WriteString(stall, tc.partial) }()
			}
			start := time.Now()
			if tc.path == "" {
				tc.path = path
			}
			if tc.url == "" {
				tc.url = srv.URL
			}
			res, got, code := postBody(t, tc.client, tc.url+tc.path, tc.contentType, body, -1, nil)
			// REST's google.rpc.Status has the code's number.
			rest := res.StatusCode == http.StatusGatewayTimeout && strings.Contains(string(got), `"code":4`)
			if code != "4" && !strings.Contains(string(got), `"code":"deadline_exceeded"`) && !rest {
				t.Errorf("after %v: %d %q (grpc-status %q), want deadline_exceeded", time.Since(start), res.StatusCode, got, code)
			}
			// The message: Connect's JSON, gRPC's grpc-message, gRPC-Web's
			// trailers frame.
			msg := string(got) + res.Header.Get("Grpc-Message") + res.Trailer.Get("Grpc-Message")
			if strings.Contains(msg, "127.0.0.1") {
				t.Errorf("message %q names an address", msg)
			}
			if res.ProtoMajor == 1 && !strings.Contains(msg, "request body not received within the call's deadline") {
				t.Errorf("HTTP/1.1 message %q, want one that says the body did not arrive in time", msg)
			}
		})
	}
}

// An HTTP/1.1 client that sends the headers and part of the body, then
// nothing, loses its connection at the call timeout.
func TestUnaryBodyTrickleClosesHTTP1Connection(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{CallTimeout: 300 * time.Millisecond}, nil)
	conn := srv.Dial(t)
	fmt.Fprintf(conn, "POST /connectkit.ping.v1.PingService/Ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: 100\r\n\r\n\x08")
	br := bufio.NewReader(conn)
	res, got := readRawResponse(t, conn, br)
	if !strings.Contains(string(got), "deadline_exceeded") {
		t.Errorf("%d %q, want deadline_exceeded", res.StatusCode, got)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want the connection closed (EOF)", err)
	}
}

// endless is a body that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A Connect unary body that says it is past the limit is refused before it
// is read: connect alone would read it all to report its size.
func TestOversizedConnectBodyIsRefusedUnread(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{MaxRequestBytes: 64 << 10}, nil)
	for name, client := range map[string]*http.Client{"http1": srv.HTTP1Client(), "h2c": srv.HTTP2Client()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/connectkit.ping.v1.PingService/Ping",
				io.NopCloser(io.LimitReader(endless{}, 64<<20)))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 64 << 20
			req.Header.Set("Content-Type", "application/proto")
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(got), `"code":"resource_exhausted"`) {
				t.Errorf("%d %q, want 429 resource_exhausted", res.StatusCode, got)
			}
		})
	}
}

// A stream's request whose message fails and whose body then stalls must
// not leave the HTTP/1.1 connection serving the rest of that body as the
// next request (a wrapped Body hid the unread rest from net/http).
func TestUnreadBodyIsNeverTheNextRequest(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{CallTimeout: 300 * time.Millisecond}, nil)
	conn := srv.Dial(t)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	envelope := "\x00\x00\x00\x00\x01\xff" // one message, not protobuf
	fmt.Fprintf(conn, "POST /connectkit.ping.v1.PingService/CountUp HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+proto\r\nContent-Length: %d\r\n\r\n%s",
		len(envelope)+len(smuggled), envelope)
	br := bufio.NewReader(conn)
	readRawResponse(t, conn, br)
	_, _ = io.WriteString(conn, smuggled) // the rest of the body, late
	if res2, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("the rest of the body was served as a request: %d", res2.StatusCode)
	}
}

// A client that sets a deadline longer than KIT_CALL_TIMEOUT gets that long
// to send its body (up to KIT_MAX_CALL_TIMEOUT), in each protocol's header.
// The body that must arrive pauses 400ms, twice KIT_CALL_TIMEOUT, well
// inside the caller's 5s (a loaded machine took 727ms to serve it, where
// the cap was 600ms); one that must not arrive never does, and the cap
// shows in the call ending before the caller's minute.
func TestUnaryBodyGetsTheCallersDeadline(t *testing.T) {
	t.Parallel()
	const callTimeout, maxCallTimeout = 200 * time.Millisecond, 5 * time.Second
	srv := newPingServer(t, kit.Config{CallTimeout: callTimeout, MaxCallTimeout: maxCallTimeout}, nil)
	const path = "/connectkit.ping.v1.PingService/Ping"
	grpcBody, connectBody := "\x00\x00\x00\x00\x02\x08\x2a", "\x08\x2a"
	for _, tc := range []struct {
		name, contentType, header, timeout, body string
		client                                   *http.Client
		pause                                    time.Duration // after the first byte; 0: the rest never comes
		wantOK                                   bool
	}{
		{"connect/http1", "application/proto", "Connect-Timeout-Ms", "5000", connectBody, srv.HTTP1Client(), 2 * callTimeout, true},
		{"connect/h2c", "application/proto", "Connect-Timeout-Ms", "5000", connectBody, srv.HTTP2Client(), 2 * callTimeout, true},
		{"grpc", "application/grpc", "Grpc-Timeout", "5S", grpcBody, srv.HTTP2Client(), 2 * callTimeout, true},
		{"grpc-web/http1", "application/grpc-web", "Grpc-Timeout", "5000m", grpcBody, srv.HTTP1Client(), 2 * callTimeout, true},
		// The caller's deadline is capped at KIT_MAX_CALL_TIMEOUT.
		{"capped/http1", "application/proto", "Connect-Timeout-Ms", "60000", connectBody, srv.HTTP1Client(), 0, false},
		{"capped/grpc", "application/grpc", "Grpc-Timeout", "1M", grpcBody, srv.HTTP2Client(), 0, false},
		// A caller's shorter deadline is the body's too.
		{"shorter/http1", "application/proto", "Connect-Timeout-Ms", "50", connectBody, srv.HTTP1Client(), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body, w := io.Pipe()
			ended := make(chan struct{})
			t.Cleanup(func() { close(ended) })
			go func() {
				_, _ = io.WriteString(w, tc.body[:1])
				if tc.pause == 0 {
					<-ended
					w.Close()
					return
				}
				time.Sleep(tc.pause)
				_, _ = io.WriteString(w, tc.body[1:])
				w.Close()
			}()
			start := time.Now()
			res, got, status := postBody(t, tc.client, srv.URL+path, tc.contentType, body, int64(len(tc.body)), http.Header{tc.header: {tc.timeout}})
			took := time.Since(start)
			ok := status == "0" || (status == "" && res.StatusCode == http.StatusOK)
			deadline := status == "4" || strings.Contains(string(got), `"code":"deadline_exceeded"`)
			switch {
			case tc.wantOK && !ok:
				t.Errorf("after %v: %d %q (grpc-status %q), want the call to succeed", took, res.StatusCode, got, status)
			case !tc.wantOK && !deadline:
				t.Errorf("after %v: %d %q (grpc-status %q), want deadline_exceeded", took, res.StatusCode, got, status)
			case !tc.wantOK && took >= time.Minute:
				t.Errorf("deadline_exceeded after %v, want it at KIT_MAX_CALL_TIMEOUT (%v)", took, maxCallTimeout)
			}
		})
	}
}

// readRawResponse reads one HTTP/1.1 response from br, conn's reader, and
// its whole body, within 20s.
func readRawResponse(t *testing.T, conn net.Conn, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	res, got, err := rawResponse(conn, br)
	if err != nil {
		t.Fatal(err)
	}
	return res, got
}

// rawResponse is [readRawResponse] that returns the error of a response
// that did not come.
func rawResponse(conn net.Conn, br *bufio.Reader) (*http.Response, []byte, error) {
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, got, nil
}

// postBody posts body as contentType (of length size, or unknown if -1)
// and returns the response, its body and its grpc-status, if any (in the
// trailers, the headers, or a gRPC-Web trailers frame).
func postBody(t *testing.T, client *http.Client, url, contentType string, body io.Reader, size int64, header http.Header) (*http.Response, []byte, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if size >= 0 {
		req.ContentLength = size
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	if contentType == "application/grpc" {
		req.Header.Set("Te", "trailers")
	}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	status := res.Trailer.Get("Grpc-Status") + res.Header.Get("Grpc-Status")
	if status == "" && strings.HasPrefix(contentType, "application/grpc-web") {
		status = grpcWebStatus(got)
	}
	return res, got, status
}

// grpcWebStatus reads grpc-status from a gRPC-Web body's trailers frame.
func grpcWebStatus(body []byte) string {
	for len(body) >= 5 {
		n := int(body[1])<<24 | int(body[2])<<16 | int(body[3])<<8 | int(body[4])
		if 5+n > len(body) {
			return ""
		}
		if body[0]&0x80 != 0 {
			for _, line := range strings.Split(string(body[5:5+n]), "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "grpc-status") {
					return strings.TrimSpace(v)
				}
			}
		}
		body = body[5+n:]
	}
	return ""
}

// With KIT_MAX_CALL_TIMEOUT off, a client's deadline does not lengthen the
// time its body may take past KIT_CALL_TIMEOUT: otherwise a client asking
// for hours (Grpc-Timeout: 2000000H) could hold a body, its goroutine and
// its connection that long.
func TestUnaryBodyWithoutMaxCallTimeoutKeepsTheCallTimeout(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{CallTimeout: 200 * time.Millisecond, MaxCallTimeout: kit.NoTimeout}, nil)
	const path = "/connectkit.ping.v1.PingService/Ping"
	for _, tc := range []struct {
		name, contentType, header, timeout, body string
		client                                   *http.Client
	}{
		{"connect/http1", "application/proto", "Connect-Timeout-Ms", "3600000", "\x08\x2a", srv.HTTP1Client()},
		{"grpc", "application/grpc", "Grpc-Timeout", "2000000H", "\x00\x00\x00\x00\x02\x08\x2a", srv.HTTP2Client()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body, w := io.Pipe()
			go func() {
				_, _ = io.WriteString(w, tc.body[:1])
				time.Sleep(3 * time.Second)
				_, _ = io.WriteString(w, tc.body[1:])
				w.Close()
			}()
			start := time.Now()
			res, got, status := postBody(t, tc.client, srv.URL+path, tc.contentType, body, int64(len(tc.body)), http.Header{tc.header: {tc.timeout}})
			if status != "4" && !strings.Contains(string(got), `"code":"deadline_exceeded"`) {
				t.Errorf("after %v: %d %q (grpc-status %q), want deadline_exceeded", time.Since(start), res.StatusCode, got, status)
			}
		})
	}
}

// bodyMessage is the message kit gives a call whose request body did not
// arrive within its deadline.
const bodyMessage = "request body not received within the call's deadline"

// A read deadline that is not kit's body deadline keeps the socket's
// error: a TLS handshake cut by KIT_READ_HEADER_TIMEOUT is logged with
// it, not as a call's body that did not arrive (no call was made).
func TestHandshakeTimeoutLogsNoBodyMessage(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	srv := newPingServer(t, kit.Config{TLSCertFile: certFile, TLSKeyFile: keyFile, ReadHeaderTimeout: 100 * time.Millisecond},
		nil, kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Nothing sent: the server closes the connection at the timeout,
	// after its error log's line.
	_, _ = io.Copy(io.Discard, conn)
	line := logs.String()
	if !strings.Contains(line, "TLS handshake error") {
		t.Fatalf("logs %q, want the handshake's error", line)
	}
	if strings.Contains(line, bodyMessage) {
		t.Errorf("handshake timeout logged as %q", line)
	}
}

// A handler's own read deadline (http.ResponseController.SetReadDeadline)
// fails its body's read with the socket's timeout, not with kit's message
// about a call's deadline, over HTTP/1.1 and beneath TLS.
func TestHandlerReadDeadlineKeepsItsError(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Errorf("SetReadDeadline: %v", err)
		}
		_, err := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, err.Error())
	})
	mount := func(srv *kit.Server) { srv.Mount("/upload/", handler) }
	plain := kittest.NewServer(t, kit.Config{}, mount)
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	tlsSrv := kittest.NewServer(t, kit.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, mount)
	var http1 http.Protocols
	http1.SetHTTP1(true)
	tlsHTTP1 := &http.Client{Transport: &http.Transport{Protocols: &http1, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(tlsHTTP1.CloseIdleConnections)
	for _, tc := range []struct {
		name   string
		url    string
		client *http.Client
	}{
		{name: "http1", url: plain.URL, client: plain.HTTP1Client()},
		{name: "http1+tls", url: tlsSrv.URL, client: tlsHTTP1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body, stall := io.Pipe()
			defer stall.Close()
			go func() { _, _ = io.WriteString(stall, "x") }()
			res, got, _ := postBody(t, tc.client, tc.url+"/upload/", "application/octet-stream", body, -1, nil)
			if res.StatusCode != http.StatusOK || !bytes.Contains(got, []byte("i/o timeout")) {
				t.Errorf("%d %q, want the socket's timeout", res.StatusCode, got)
			}
			if bytes.Contains(got, []byte(bodyMessage)) {
				t.Errorf("handler's read deadline failed with %q", got)
			}
		})
	}
}
