package kit_test

import (
	"bytes"
	"crypto/tls"
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
