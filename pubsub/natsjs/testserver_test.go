package natsjs

import (
	"fmt"
	"net"
	"slices"
	"strings"
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

// startTestCluster runs a JetStream cluster of n nats-servers on loopback
// (random client and route ports, a store directory each) until the test
// ends, once it has elected its meta leader, and returns them with their
// client URLs joined as NATS_URL takes them. configure, if any, changes
// each server's options (users, say) before it starts.
func startTestCluster(t *testing.T, n int, configure ...func(*server.Options)) ([]*server.Server, string) {
	t.Helper()
	// The route ports are picked and freed before the servers start
	// (JetStream refuses a cluster server without routes), so another
	// process may take one in between: the cluster is then started again
	// on other ports (seen once in ~170 runs under load).
	for attempt := 1; ; attempt++ {
		servers, urls, err := tryTestCluster(t, n, configure)
		if err == nil {
			return servers, urls
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("starting the cluster again: %v", err)
	}
}

// tryTestCluster starts a cluster of n servers on route ports it picks,
// and shuts them down if one is not ready.
func tryTestCluster(t *testing.T, n int, configure []func(*server.Options)) ([]*server.Server, string, error) {
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	var (
		servers []*server.Server
		urls    []string
	)
	shutdown := func() {
		for _, srv := range servers {
			srv.Shutdown()
		}
	}
	for i, port := range ports {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(), Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = "test", "127.0.0.1", port
		for _, c := range configure {
			c(opts)
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(srv.Shutdown)
		servers = append(servers, srv)
	}
	for _, srv := range servers {
		if !srv.ReadyForConnections(15 * time.Second) {
			shutdown()
			return nil, "", fmt.Errorf("cluster server %s not ready", srv.Name())
		}
		urls = append(urls, srv.ClientURL())
	}
	deadline := time.Now().Add(15 * time.Second)
	for !slices.ContainsFunc(servers, (*server.Server).JetStreamIsLeader) {
		if time.Now().After(deadline) {
			shutdown()
			return nil, "", fmt.Errorf("the cluster elected no JetStream meta leader within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return servers, strings.Join(urls, ","), nil
}
