package kit_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// TestHTTPClientHTTP1ServerErrorsKeepItHTTP1 calls an HTTP/1.1-only
// server whose handler panics on some calls (http.ErrAbortHandler, or
// any value), which Go's server answers by closing the connection
// without a byte, as an HTTP/2-only server closes an HTTP/1.1 one: each
// failed call is one between answered ones, on a connection of its own,
// and no later call sends the h2c preface to the handler again. Then an
// HTTP/2-only net/http server takes the address: the two calls in a row
// that it closes so fail, and the next goes over h2c.
func TestHTTPClientHTTP1ServerErrorsKeepItHTTP1(t *testing.T) {
	t.Parallel()
	client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
	var http1, h2c http.Protocols
	http1.SetHTTP1(true)
	h2c.SetUnencryptedHTTP2(true)
	var pri, h2Calls atomic.Int32
	addr, stop := serveProtocols(t, "127.0.0.1:0", http1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/panic":
			panic("handler bug")
		}
		w.Header().Set("Connection", "close") // each call on a new connection
		_, _ = io.WriteString(w, "answer to "+r.Method)
	}), &pri)
	url := "http://" + addr
	call(t, client, newRequest(t, http.MethodGet, url+"/", nil))
	for i := range 10 {
		method, path, body := http.MethodGet, "/abort", io.Reader(nil)
		if i%2 == 1 {
			method, path, body = http.MethodPost, "/panic", strings.NewReader("payload")
		}
		if resp, err := client.Do(newRequest(t, method, url+path, body)); err == nil {
			_ = resp.Body.Close()
			t.Fatalf("%s %s, whose handler panics = %s %s; want the connection's close", method, path, resp.Proto, resp.Status)
		}
		call(t, client, newRequest(t, http.MethodGet, url+"/", nil))
		call(t, client, newRequest(t, http.MethodPost, url+"/", strings.NewReader("payload")))
	}
	if pri.Load() != 1 {
		t.Fatalf("HTTP/1.1 server whose handler panicked 10 times got %d h2c prefaces; want the first call's alone", pri.Load())
	}

	stop()
	serveProtocols(t, addr, h2c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h2Calls.Add(1)
		_, _ = io.WriteString(w, "answer to "+r.Method)
	}), &pri)
	for i := range 2 {
		if resp, err := client.Do(newRequest(t, http.MethodGet, url+"/", nil)); err == nil {
			_ = resp.Body.Close()
			t.Fatalf("GET %d over HTTP/1.1 of an HTTP/2-only server = %s %s; want the connection's close", i, resp.Proto, resp.Status)
		}
	}
	resp, err := client.Do(newRequest(t, http.MethodGet, url+"/", nil))
	if err != nil {
		t.Fatalf("GET after two silent closes of the HTTP/2-only server: %v", err)
	}
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 || h2Calls.Load() != 1 {
		t.Errorf("GET after two silent closes went over %s, handler got %d calls; want HTTP/2, 1", resp.Proto, h2Calls.Load())
	}
}
