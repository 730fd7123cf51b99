package natsjs

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startTestServer runs a nats-server with JetStream on loopback until the
// test ends, standing for an external server. A zero opts.Port is a random
// port, and an empty opts.StoreDir a temporary directory.
func startTestServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.JetStream = true
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	return startPlainTestServer(t, opts)
}

// startPlainTestServer runs a nats-server on loopback until the test ends,
// with JetStream only if opts has it. A zero opts.Port is a random port.
func startPlainTestServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.NoSigs = "127.0.0.1", true
	if opts.Port == 0 {
		opts.Port = -1
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return srv
}
