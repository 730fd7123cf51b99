package kit_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// BenchmarkHTTPClient measures what the balanced client adds to a unary
// gRPC call over h2c: the same bare connect server (no chain, one
// address) called through a plain h2c http.Client and through
// HTTPClient (the caller's ClientOptions are not used, to leave the chain
// out). See BENCHMARKS.md, section 6.
func BenchmarkHTTPClient(b *testing.B) {
	url, protocols := benchPingServer(b)
	plain := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	b.Cleanup(plain.CloseIdleConnections)
	caller := newQuietServer(b)
	for _, c := range []struct {
		name   string
		client *http.Client
	}{
		{"plain", plain},
		{"HTTPClient", caller.HTTPClient()},
	} {
		b.Run(c.name, func(b *testing.B) {
			client := pingv1connect.NewPingServiceClient(c.client, url, connect.WithGRPC())
			req := connect.NewRequest(&pingv1.PingRequest{Number: 42, Text: "hello"})
			if _, err := client.Ping(b.Context(), req); err != nil { // connect
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Ping(b.Context(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// newQuietServer returns a kit server that logs nothing, run until the
// benchmark ends, for its HTTPClient.
func newQuietServer(b *testing.B) *kit.Server {
	b.Helper()
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return srv
}

// benchPingServer serves a bare connect ping service (no chain) over h2c
// and HTTP/1.1 on loopback, and returns its URL and protocols.
func benchPingServer(b *testing.B) (string, *http.Protocols) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingServer{}))
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), &protocols
}

// BenchmarkHTTPClientProtocols measures calls through HTTPClient in every
// protocol, unary and a server stream of three messages, without and with
// the caller's ClientOptions (whose chain judges each call for the outlier
// ejection), and Connect's unary call as a GET, which net/http may send
// again on a new connection (see redial). See BENCHMARKS.md, section 7.
func BenchmarkHTTPClientProtocols(b *testing.B) {
	url, _ := benchPingServer(b)
	caller := newQuietServer(b)
	for _, withOpts := range []bool{false, true} {
		for _, p := range []struct {
			name      string
			opt       connect.ClientOption
			unaryOnly bool // a stream would be connect's POST again
		}{
			{name: "grpc", opt: connect.WithGRPC()},
			{name: "grpcweb", opt: connect.WithGRPCWeb()},
			{name: "connect", opt: connect.WithProtoJSON()},
			{name: "connectGET", opt: connect.WithClientOptions(connect.WithProtoJSON(), connect.WithHTTPGet()), unaryOnly: true},
		} {
			opts := []connect.ClientOption{p.opt}
			name := p.name
			if withOpts {
				opts = append(caller.ClientOptions(), p.opt)
				name += "+ClientOptions"
			}
			client := pingv1connect.NewPingServiceClient(caller.HTTPClient(), url, opts...)
			b.Run(name+"/unary", func(b *testing.B) {
				req := connect.NewRequest(&pingv1.PingRequest{Number: 42, Text: "hello"})
				b.ReportAllocs()
				for b.Loop() {
					if _, err := client.Ping(b.Context(), req); err != nil {
						b.Fatal(err)
					}
				}
			})
			if p.unaryOnly {
				continue
			}
			b.Run(name+"/stream", func(b *testing.B) {
				req := connect.NewRequest(&pingv1.CountUpRequest{Number: 3})
				b.ReportAllocs()
				for b.Loop() {
					up, err := client.CountUp(b.Context(), req)
					if err != nil {
						b.Fatal(err)
					}
					for up.Receive() {
					}
					if err := up.Err(); err != nil {
						b.Fatal(err)
					}
					_ = up.Close()
				}
			})
		}
	}
}
