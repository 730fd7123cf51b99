package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime/trace"
	"strings"
	"testing"
)

// TestCountEvents traces a real HTTP/1.1 server on loopback answering
// calls one at a time on one connection and checks what -events counts:
// one response a call, and net/http's background read of the connection,
// which it starts once a request's body has been read, created once a
// call by the connection's goroutine.
func TestCountEvents(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	url := "http://" + ln.Addr().String() + "/"

	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	const calls = 50
	for range calls {
		resp, err := client.Post(url, "text/plain", strings.NewReader(`{"number":42}`))
		if err != nil {
			trace.Stop()
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	trace.Stop()

	ec, err := countEvents(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if ec.responses != calls {
		t.Errorf("responses = %d, want %d", ec.responses, calls)
	}
	created := 0
	for k, v := range ec.counts {
		if strings.HasPrefix(k, "create: http.(*connReader).backgroundRead  by: http.(*connReader).startBackgroundRead") {
			created += v
		}
	}
	if created != calls {
		t.Errorf("background reads created = %d, want %d; counts: %v", created, calls, ec.counts)
	}
	if ec.ran["conn (h2 serve loop; HTTP/1 handler)"] <= 0 {
		t.Errorf("no running time for the connection's goroutine: %v", ec.ran)
	}
	var out bytes.Buffer
	if err := ec.print(&out, 0.5); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "responses 50;") || !strings.Contains(out.String(), "backgroundRead") {
		t.Errorf("print wrote:\n%s", out.String())
	}
}
