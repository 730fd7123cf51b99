package natsjs_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// TestReconnectsLeaveNoPullRequests: after a reconnect, nats.go's Consume
// pulls again on the same inbox, which it subscribes again on the new
// connection. The pull requests made before still wait on the server while
// it sees interest on that inbox: the old connection, cut by the network
// but not yet found dead, or the new one (a server that closed the old
// connection checks the interest of its pull requests only later; a
// consumer leader on another node of a cluster sees the new subscription
// through its routes). Their expiries then reach the new connection and
// nats.go renews them: each reconnect added a pull request for good (1 + 3
// after 3 reconnects in each case below; with the connection closed, most
// times: the server's check of interest races the new subscription). After
// the reconnects the subscription holds one pull request again, and still
// consumes.
func TestReconnectsLeaveNoPullRequests(t *testing.T) {
	t.Parallel()
	const (
		expiry = time.Second // heartbeats every 500ms
		cuts   = 3
	)
	for _, tc := range []struct {
		name   string
		server bool
	}{
		// The client side only: the server holds the old connection, and
		// its subscription of the inbox, until its pings go unanswered
		// (minutes).
		{"single server, connection dropped", false},
		// Both: the server closes the old connection at once, but keeps
		// its pull requests until it next checks their interest, by when
		// the new connection subscribes the inbox.
		{"single server, connection closed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := natsjs.StartTestServer(t, &server.Options{})
			proxy := newCuttingProxy(t, srv.ClientURL())
			b, reconnects := newReconnecting(t, natsjs.Config{URL: proxy.url, PullExpiry: expiry})
			admin := adminJS(t, srv.ClientURL())
			stream := "recon_single_" + strconv.FormatBool(tc.server)
			checkReconnects(t, b, admin, stream, expiry, cuts, reconnects, func() { proxy.cut(tc.server) })
		})
	}
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		servers := startCluster(t, 3)
		proxies := make(map[string]*cuttingProxy) // by server name
		var urls []string
		for _, s := range servers {
			p := newCuttingProxy(t, s.ClientURL())
			proxies[s.Name()] = p
			urls = append(urls, p.url)
		}
		b, reconnects := newReconnecting(t, natsjs.Config{URL: strings.Join(urls, ","), Replicas: 3, PullExpiry: expiry},
			nats.DontRandomize())
		admin := adminJS(t, servers[0].ClientURL())
		var leader string
		checkReconnects(t, b, admin, "recon_cluster", expiry, cuts, reconnects, func() {
			if leader == "" {
				// The client reconnects only to the nodes that do not
				// lead the consumer, which keeps the waiting requests.
				info, err := consumerInfo(admin, "recon_cluster")
				if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
					t.Fatalf("no consumer leader: %v", err)
				}
				leader = info.Cluster.Leader
				proxies[leader].refuse.Store(true)
				t.Logf("consumer leader %s", leader)
			}
			for _, p := range proxies {
				p.cut(false)
			}
		})
		if got := b.Conn().ConnectedServerName(); got == leader {
			t.Fatalf("connected to the consumer leader %s", got)
		}
	})
}

// checkReconnects subscribes with b, cuts its connection cuts times with
// cut, waits for the pull requests to settle, and checks that one waits,
// then that a message published after is handled.
func checkReconnects(t *testing.T, b *natsjs.Broker, admin jetstream.JetStream, stream string, expiry time.Duration, cuts int, reconnects *atomic.Int32, cut func()) {
	t.Helper()
	topic := strings.ReplaceAll(stream, "_", ".")
	var c collector
	sub, err := pubsub.NewSubscriber(b, topic, "s", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	waiting := func() int { return numWaiting(admin, stream) }
	pubsubtest.WaitFor(t, "the first pull request", func() bool { return waiting() == 1 })
	for range cuts {
		// At least one reconnect: a cut of several connections, slowed by
		// a loaded machine, may cut the new one too.
		before := reconnects.Load()
		cut()
		pubsubtest.WaitFor(t, "the reconnect", func() bool { return reconnects.Load() > before && b.Conn().IsConnected() })
		time.Sleep(expiry / 2) // pulled again after it
	}
	// Every pull request expires within expiry; what waits after that is
	// what the subscription renews.
	time.Sleep(expiry + time.Second)
	var seen []int
	deadline := time.Now().Add(3 * expiry)
	for {
		n := waiting()
		seen = append(seen, n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pull requests wait on the server after %d reconnects, want 1 (seen %v)", n, cuts, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("waiting pull requests after %d reconnects: %v", cuts, seen)

	// And it still consumes.
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitAny(t, 15*time.Second, "no message after the reconnects")
}

// newReconnecting connects a broker that reconnects at once, counting its
// reconnects.
func newReconnecting(t *testing.T, cfg natsjs.Config, opts ...nats.Option) (*natsjs.Broker, *atomic.Int32) {
	t.Helper()
	var reconnects atomic.Int32
	opts = append(opts, nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0),
		nats.ReconnectHandler(func(*nats.Conn) { reconnects.Add(1) }))
	b, err := natsjs.New(t.Context(), cfg, natsjs.WithNATSOptions(opts...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, &reconnects
}

// adminJS connects to url for the test's own look-ups.
func adminJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// consumerInfo asks for the consumer "s" of stream.
func consumerInfo(js jetstream.JetStream, stream string) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, stream, "s")
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}

// numWaiting is the number of pull requests waiting on the consumer "s" of
// stream, or -1 if it cannot be asked.
func numWaiting(js jetstream.JetStream, stream string) int {
	info, err := consumerInfo(js, stream)
	if err != nil {
		return -1
	}
	return info.NumWaiting
}

// startCluster runs a JetStream cluster of n servers on loopback until the
// test ends. They do not advertise their client URLs, so that a client
// knows only the URLs it is given.
func startCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1", Port: -1, NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "recon", Host: "127.0.0.1", Port: ports[i], NoAdvertise: true},
			Routes:  routes,
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(srv.Shutdown)
		servers[i] = srv
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
	}
	pubsubtest.WaitFor(t, "a JetStream meta leader", func() bool {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	return servers
}

// cuttingProxy forwards NATS connections to a server, and cuts them.
type cuttingProxy struct {
	url    string
	refuse atomic.Bool // close new connections at once
	mu     sync.Mutex
	conns  []net.Conn // client side, server side, ...
}

func newCuttingProxy(t *testing.T, serverURL string) *cuttingProxy {
	t.Helper()
	p := &cuttingProxy{}
	p.url = startProxyAccepting(t, serverURL, plainCopy, plainCopy, func(client, server net.Conn) bool {
		if p.refuse.Load() {
			return false
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.conns = append(p.conns, client, server)
		return true
	})
	return p
}

// cut closes the client side of the open connections, and with server
// their server side too, which the server notices at once.
func (p *cuttingProxy) cut(server bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.conns {
		if i%2 == 0 || server {
			_ = c.Close()
		}
	}
	p.conns = nil
}
