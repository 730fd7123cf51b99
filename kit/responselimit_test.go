package kit_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// TestResponseLimitSameForEveryClient sends a unary response larger than
// KIT_MAX_RESPONSE_BYTES, but small once gzipped, to clients that accept
// gzip (connect-go, as connect-node and grpcio do) and to one that does not
// (a plain HTTP request, as curl sends it). Every client must get
// ResourceExhausted, and the server must log the call as it failed: connect
// checks its send limit after the chain has logged the call OK, and on the
// compressed message, so the gzip clients got their response and curl got
// a 429 that the log called OK.
func TestResponseLimitSameForEveryClient(t *testing.T) {
	t.Parallel()
	const limit = 1 << 10
	var logs syncBuffer
	srv := newPingServer(t, kit.Config{MaxResponseBytes: limit}, nil,
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	text := strings.Repeat("a", 4*limit) // gzips to a few dozen bytes

	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			client := newPingClient(srv, p.Client, p.Options...)
			_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: text}))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("Ping = %v, want ResourceExhausted", err)
			}
		})
	}
	t.Run("curl", func(t *testing.T) {
		t.Parallel()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+pingPath, strings.NewReader(`{"text": "`+text+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept-Encoding", "identity") // as curl: net/http would ask for gzip
		res, err := srv.HTTP1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusTooManyRequests {
			t.Errorf("status %d, want 429 (resource_exhausted)", res.StatusCode)
		}
	})
	t.Run("small response", func(t *testing.T) {
		t.Parallel()
		client := newPingClient(srv, srv.HTTP2Client())
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: "small"})); err != nil {
			t.Errorf("Ping with a small response: %v", err)
		}
	})
}

// TestResponseLimitLogged checks that the log line of a call whose
// response is over the limit says resource_exhausted, as its client saw.
func TestResponseLimitLogged(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv := newPingServer(t, kit.Config{MaxResponseBytes: 1 << 10}, nil,
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	req, _ := http.NewRequest(http.MethodPost, srv.URL+pingPath, strings.NewReader(`{"text": "`+strings.Repeat("a", 4<<10)+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept-Encoding", "identity") // as curl: net/http would ask for gzip
	res, err := srv.HTTP1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if err := srv.Stop(); err != nil { // the log line is written before the response
		t.Fatal(err)
	}
	lines := logLines(t, &logs, "rpc")
	if len(lines) != 1 || lines[0]["code"] != "resource_exhausted" {
		t.Errorf("logged %v, want one line with code resource_exhausted (the client got %d)", lines, res.StatusCode)
	}
}

// TestResponseLimitOfAHandlerThatReusesItsRequest: the limit holds for a
// handler that called another service with its own request, which the
// client rewrote into a client call's (see reusingPing): responseLimit
// read the request's spec after the handler, found a client call's and let
// the response through, whole, to every client that accepts gzip.
func TestResponseLimitOfAHandlerThatReusesItsRequest(t *testing.T) {
	t.Parallel()
	const limit = 1 << 10
	backend := newPingServer(t, kit.Config{}, nil)
	svc := &reusingPing{next: newPingClient(backend, backend.HTTP2Client())}
	front := kittest.NewServer(t, kit.Config{MaxResponseBytes: limit}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
	})
	text := strings.Repeat("a", 4*limit) // gzips to a few dozen bytes
	for _, p := range front.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			_, err := newPingClient(front, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: text}))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("Ping = %v, want ResourceExhausted", err)
			}
		})
	}
}
