// Package kittest runs a [kit.Server] on a random loopback port for tests,
// with ready-made clients for every protocol it serves.
package kittest

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/kit"
)

// Server is a running [kit.Server] and the URL it serves on.
type Server struct {
	*kit.Server
	// URL is the base URL of the main listener, "http://127.0.0.1:port",
	// or "https://127.0.0.1:port" when cfg.TLSCertFile is set.
	URL string
	// AdminURL is the base URL of the admin listener, or "" when it is off.
	AdminURL string

	h1, h2   *http.Client
	stop     func() error
	explicit atomic.Bool // Stop was called by the test
}

// NewServer builds a server from cfg and opts, lets mount add its handlers,
// and runs it on 127.0.0.1 at a random port (cfg.Addr is replaced; the admin
// listener is off unless cfg.AdminAddr is set, to "127.0.0.1:0" say). Logs
// go to the test's output. The server shuts down at the end of the test,
// which fails if the shutdown is not clean.
func NewServer(tb testing.TB, cfg kit.Config, mount func(*kit.Server), opts ...kit.Option) *Server {
	tb.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = kit.AdminOff
	}
	logger := slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := kit.New(cfg, append([]kit.Option{kit.WithLogger(logger)}, opts...)...)
	if err != nil {
		tb.Fatalf("kittest: %v", err)
	}
	if mount != nil {
		mount(srv)
	}
	if err := srv.Listen(); err != nil {
		tb.Fatalf("kittest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	scheme := "http://"
	if cfg.TLSCertFile != "" {
		scheme = "https://"
	}
	s := &Server{Server: srv, URL: scheme + srv.Addr().String()}
	if a := srv.AdminAddr(); a != nil {
		s.AdminURL = "http://" + a.String()
	}
	s.h1 = &http.Client{Transport: &http.Transport{}}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	s.h2 = &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	s.stop = sync.OnceValue(func() error {
		// Idle client connections first, so the server need not wait for
		// them to acknowledge its GOAWAY.
		s.h1.CloseIdleConnections()
		s.h2.CloseIdleConnections()
		cancel()
		return <-done
	})
	tb.Cleanup(func() {
		if err := s.stop(); err != nil && !s.explicit.Load() {
			tb.Errorf("kittest: server shutdown: %v", err)
		}
	})
	return s
}

// Stop shuts the server down as a signal would, and returns what
// [kit.Server.Run] returned. Calling it again returns the same result.
func (s *Server) Stop() error {
	s.explicit.Store(true)
	return s.stop()
}

// HTTP1Client returns a client that speaks HTTP/1.1 to the server.
func (s *Server) HTTP1Client() *http.Client { return s.h1 }

// HTTP2Client returns a client that speaks cleartext HTTP/2 with prior
// knowledge (h2c) to the server.
func (s *Server) HTTP2Client() *http.Client { return s.h2 }

// Protocol is one way a connect client can call the server.
type Protocol struct {
	// Name names the protocol, codec and HTTP version for subtests, such
	// as "grpc" or "connect+json/http1".
	Name string
	// Client is the HTTP client to build the connect client with: HTTP/1.1
	// or cleartext HTTP/2.
	Client *http.Client
	// Options are the connect client options that select the protocol and
	// codec.
	Options []connect.ClientOption
}

// Protocols returns every protocol and codec a cleartext server answers:
// gRPC over h2c, gRPC-Web and Connect (binary and JSON) over both HTTP/1.1
// and h2c.
func (s *Server) Protocols() []Protocol {
	return []Protocol{
		{Name: "grpc", Client: s.h2, Options: []connect.ClientOption{connect.WithGRPC()}},
		{Name: "grpcweb/h2c", Client: s.h2, Options: []connect.ClientOption{connect.WithGRPCWeb()}},
		{Name: "grpcweb/http1", Client: s.h1, Options: []connect.ClientOption{connect.WithGRPCWeb()}},
		{Name: "connect+proto/h2c", Client: s.h2},
		{Name: "connect+proto/http1", Client: s.h1},
		{Name: "connect+json/h2c", Client: s.h2, Options: []connect.ClientOption{connect.WithProtoJSON()}},
		{Name: "connect+json/http1", Client: s.h1, Options: []connect.ClientOption{connect.WithProtoJSON()}},
	}
}

// Dial opens a raw TCP connection to the server's main listener.
func (s *Server) Dial(tb testing.TB) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		tb.Fatalf("kittest: dial: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
