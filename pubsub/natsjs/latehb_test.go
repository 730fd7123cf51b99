package natsjs_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// TestLateHeartbeatsLeaveNoPullRequests: heartbeats that arrive late (a
// busy machine, a stalled network) make nats.go's Consume pull again while
// its earlier pull request still waits on the server, and from then on it
// renews both at every expiry: each such stall added one pull request for
// good (13 after a 12-minute soak on a loaded machine, each heartbeated every
// second and each asking for a prefetch's worth of messages). After the
// stalls the subscription holds one pull request again.
func TestLateHeartbeatsLeaveNoPullRequests(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t)
	proxy := newPausingProxy(t, owner.ClientURL())
	const expiry = 4 * time.Second // heartbeats every second; no-heartbeat after 2s
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: proxy.url, PullExpiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	var c collector
	sub, err := pubsub.NewSubscriber(b, "late.heartbeats", "s", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)

	nc, err := nats.Connect(owner.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waiting := func() int { return numWaiting(js, "late_heartbeats") }
	pubsubtest.WaitFor(t, "the first pull request", func() bool { return waiting() == 1 })

	// Hold what the server sends for longer than two heartbeats, three
	// times: the client misses heartbeats, though its pull request still
	// waits on the server.
	const stalls = 3
	for range stalls {
		proxy.pause(2*time.Second + 1500*time.Millisecond)
		time.Sleep(500 * time.Millisecond)
	}

	// Every pull request expires within expiry; what waits after that is
	// what the subscription renews.
	time.Sleep(expiry + time.Second)
	deadline := time.Now().Add(3 * expiry)
	for {
		n := waiting()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pull requests wait on the server %s after %d stalls of heartbeats, want 1", n, 4*expiry+time.Second, stalls)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// And it still consumes.
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](owner, "late.heartbeats")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitAny(t, 15*time.Second, "no message after the stalls")
}

// pausingProxy forwards NATS connections to a server; pause holds what the
// server sends to the clients for a while, then lets it through.
type pausingProxy struct {
	url string
	mu  sync.RWMutex // held for writing while paused
}

func newPausingProxy(t *testing.T, serverURL string) *pausingProxy {
	t.Helper()
	p := &pausingProxy{}
	p.url = startProxy(t, serverURL, plainCopy, p.toClient)
	return p
}

func (p *pausingProxy) toClient(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.RLock() // waits while paused
			_, werr := dst.Write(buf[:n])
			p.mu.RUnlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *pausingProxy) pause(d time.Duration) {
	p.mu.Lock()
	time.Sleep(d)
	p.mu.Unlock()
}
