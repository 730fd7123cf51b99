package kit_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// interfacesHandler answers with the optional interfaces its
// ResponseWriter has, through io.Copy (which uses ReadFrom when there is
// one); a GET with Upgrade it answers by hijacking the connection, as a
// WebSocket handler does, and echoing a line on it.
var interfacesHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "" {
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "no http.Hijacker", http.StatusInternalServerError)
			return
		}
		conn, rw, err := hj.Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		line, _ := rw.ReadString('\n')
		_, _ = rw.WriteString(line)
		_ = rw.Flush()
		return
	}
	_, h := w.(http.Hijacker)
	_, rf := w.(io.ReaderFrom)
	_, p := w.(http.Pusher)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.Copy(w, strings.NewReader(fmt.Sprintf("hijacker=%t readerfrom=%t pusher=%t", h, rf, p)))
})

// A handler mounted at a service's path finds on its ResponseWriter the
// optional interfaces net/http's has, as at any other path: Hijacker and
// ReaderFrom over HTTP/1.1 (a WebSocket upgrade works), Pusher over
// HTTP/2. The writer that records a Connect call's answer (a GET, a POST
// that is not gRPC) had only Flusher, so such a handler found none of
// them, and a WebSocket handler at a service's path could not upgrade.
func TestServicePathWriterHasNetHTTPInterfaces(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount("/connectkit.ping.v1.PingService/", interfacesHandler)
		srv.Mount("/plain/", interfacesHandler)
	})
	get := func(client *http.Client, path string) string {
		t.Helper()
		res, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	for _, c := range []struct {
		name   string
		client *http.Client
		want   string
	}{
		{name: "HTTP/1.1", client: srv.HTTP1Client(), want: "hijacker=true readerfrom=true pusher=false"},
		{name: "HTTP/2", client: srv.HTTP2Client(), want: "hijacker=false readerfrom=false pusher=true"},
	} {
		if got := get(c.client, "/plain/Ping"); got != c.want {
			t.Fatalf("%s: net/http's writer: %q, want %q", c.name, got, c.want)
		}
		if got := get(c.client, "/connectkit.ping.v1.PingService/Ping"); got != c.want {
			t.Errorf("%s: at a service's path: %q, want %q", c.name, got, c.want)
		}
	}

	conn := srv.Dial(t)
	_, err := io.WriteString(conn, "GET /connectkit.ping.v1.PingService/Ping HTTP/1.1\r\nHost: kit\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("upgrade at a service's path: %s %q, want 101", res.Status, b)
	}
	if line, err := br.ReadString('\n'); line != "hello\n" {
		t.Errorf("the upgraded connection echoed %q (%v), want %q", line, err, "hello\n")
	}
}
