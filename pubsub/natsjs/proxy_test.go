package natsjs_test

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// copyFunc copies one direction of a proxied connection.
type copyFunc func(dst io.Writer, src io.Reader)

func plainCopy(dst io.Writer, src io.Reader) { _, _ = io.Copy(dst, src) }

// startProxy forwards NATS connections to the server at serverURL, through
// toServer and toClient, until the test ends, and returns its own URL.
func startProxy(t *testing.T, serverURL string, toServer, toClient copyFunc) string {
	t.Helper()
	return startProxyAccepting(t, serverURL, toServer, toClient, nil)
}

// startProxyAccepting is startProxy, which passes the two sides of each
// connection to accept, if not nil, before forwarding it: false closes
// them.
func startProxyAccepting(t *testing.T, serverURL string, toServer, toClient copyFunc, accept func(client, server net.Conn) bool) string {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", u.Host)
			if err != nil {
				_ = client.Close()
				continue
			}
			if accept != nil && !accept(client, server) {
				_ = client.Close()
				_ = server.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			go toServer(server, client)
			go toClient(client, server)
		}
	}()
	return "nats://" + ln.Addr().String()
}
