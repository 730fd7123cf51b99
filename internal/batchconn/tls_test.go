package batchconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// TestEndToEndTLSBatchesOnlyHTTP2 serves HTTP/1.1 and h2 over TLS on a
// ModeALPN listener and checks that gRPC calls over h2 get a batched
// connection while Connect JSON over HTTP/1.1 passes through.
func TestEndToEndTLSBatchesOnlyHTTP2(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := NewListener(inner, Config{Mode: ModeALPN})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}))
	ts := httptest.NewUnstartedServer(mux)
	ts.Listener.Close()
	ts.Listener = ln
	ts.EnableHTTP2 = true
	ts.TLS = TLSConfig(&tls.Config{NextProtos: []string{"h2", "http/1.1"}})
	var mu sync.Mutex
	var conns []*conn
	ts.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		mu.Lock()
		conns = append(conns, c.(*tls.Conn).NetConn().(*conn))
		mu.Unlock()
		return ctx
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)

	for _, tc := range []struct {
		name  string
		h2    bool
		opts  []connect.ClientOption
		proto int
		mode  int32
	}{
		{name: "grpc over h2", h2: true, opts: []connect.ClientOption{connect.WithGRPC()}, proto: 2, mode: modeBatched},
		{name: "connect json over http1", opts: []connect.ClientOption{connect.WithProtoJSON()}, proto: 1, mode: modePending},
	} {
		var protocols http.Protocols
		protocols.SetHTTP1(!tc.h2)
		protocols.SetHTTP2(tc.h2)
		roots := x509.NewCertPool()
		roots.AddCert(ts.Certificate())
		tr := &http.Transport{Protocols: &protocols, TLSClientConfig: &tls.Config{RootCAs: roots}}
		t.Cleanup(tr.CloseIdleConnections)
		client := pingv1connect.NewPingServiceClient(&http.Client{Transport: tr}, ts.URL, tc.opts...)
		for i := range int64(10) {
			res, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: i}))
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if res.Msg.GetNumber() != i {
				t.Fatalf("%s: Ping(%d) = %v", tc.name, i, res.Msg)
			}
		}
		mu.Lock()
		last := conns[len(conns)-1]
		mu.Unlock()
		if got := last.mode.Load(); got != tc.mode {
			t.Fatalf("%s: connection mode %d, want %d", tc.name, got, tc.mode)
		}
		tr.CloseIdleConnections()
	}
}
