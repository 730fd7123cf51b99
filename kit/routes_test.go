package kit_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// A pattern mounted with a percent escape names the path it unescapes to,
// as the ServeMux reads it: "/connectkit%2Eping.v1.PingService/Ping" is
// the PingService's Ping, more specific than the service's subtree, so
// calls to Ping go to it, the shortcut past the ServeMux included.
func TestEscapedPatternUnderAService(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
		srv.Mount("/connectkit%2Eping.v1.PingService/Ping", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "the escaped pattern", http.StatusTeapot)
		}))
	})
	for _, p := range s.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			_, err := newPingClient(s, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
			if err == nil {
				t.Fatal("Ping reached the service; want the handler of the more specific escaped pattern")
			}
		})
	}
}

// A service mounted at a path with doubled slashes is where the ServeMux
// puts it: a request to that path is not clean, so the ServeMux redirects it
// to the cleaned path, which the service's pattern does not match.
func TestServiceAtUncleanPath(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		_, h := pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...)
		srv.Mount("//connectkit.ping.v1.PingService/", h)
	})
	for _, client := range []*http.Client{s.HTTP1Client(), s.HTTP2Client()} {
		client := &http.Client{Transport: client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
			s.URL+"//connectkit.ping.v1.PingService/Ping", strings.NewReader(`{"number":1}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusMovedPermanently {
			t.Errorf("%s: POST //connectkit.ping.v1.PingService/Ping = %d %s; want the ServeMux's redirect to the clean path",
				resp.Proto, resp.StatusCode, body)
		}
	}
}
