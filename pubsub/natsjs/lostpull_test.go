package natsjs_test

import (
	"bufio"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// TestLostPullRequest: a subscription whose pull request never reaches the
// server (as when nats.go's Consume loses count of its requests, or a
// connection drops one) goes on within two heartbeats, a second each, not
// after the pull expiry (a minute here).
func TestLostPullRequest(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t)
	proxy := newDroppingProxy(t, owner.ClientURL(), "$JS.API.CONSUMER.MSG.NEXT.")
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: proxy.url, PullExpiry: time.Minute}, natsjs.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	var c collector
	sub, err := pubsub.NewSubscriber(b, "lost.pull", "s", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pubsubtest.WaitFor(t, "the first pull request, dropped", func() bool { return proxy.dropped.Load() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](owner, "lost.pull")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitAny(t, 15*time.Second, "no message 15s after the pull request was lost; want it within two missing heartbeats (2s)")
	// The warning gives the heartbeat as a duration, not nanoseconds.
	pubsubtest.WaitFor(t, "the no-heartbeat warning", func() bool {
		return strings.Contains(logs.String(), `"msg":"natsjs: no heartbeat from the server for two intervals; pulling again"`)
	})
	if got, want := logs.String(), `"heartbeat":1000000000`; !strings.Contains(got, want) {
		t.Errorf("log = %s, want %s in the no-heartbeat line", got, want)
	}
}

// lockedBuffer is natsjs.LockedBuffer, a bytes.Buffer safe for
// concurrent use, for logs.
type lockedBuffer = natsjs.LockedBuffer

// droppingProxy forwards NATS connections to a server, dropping the first
// message a client publishes to a subject with the given prefix.
type droppingProxy struct {
	url     string
	prefix  string
	dropped atomic.Bool
}

func newDroppingProxy(t *testing.T, serverURL, prefix string) *droppingProxy {
	t.Helper()
	p := &droppingProxy{prefix: prefix}
	p.url = startProxy(t, serverURL, p.filter, plainCopy)
	return p
}

// filter copies the client's protocol to the server operation by
// operation, leaving out the first PUB or HPUB to a subject under prefix.
func (p *droppingProxy) filter(dst io.Writer, src io.Reader) {
	r := bufio.NewReader(src)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		op := strings.Fields(line)
		if len(op) < 3 || (op[0] != "PUB" && op[0] != "HPUB") {
			if _, err := io.WriteString(dst, line); err != nil {
				return
			}
			continue
		}
		size, err := strconv.Atoi(op[len(op)-1]) // the total size comes last
		if err != nil {
			return
		}
		payload := make([]byte, size+2) // and its CRLF
		if _, err := io.ReadFull(r, payload); err != nil {
			return
		}
		if strings.HasPrefix(op[1], p.prefix) && p.dropped.CompareAndSwap(false, true) {
			continue
		}
		if _, err := io.WriteString(dst, line); err != nil {
			return
		}
		if _, err := dst.Write(payload); err != nil {
			return
		}
	}
}
