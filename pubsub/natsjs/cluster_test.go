package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// newClusterBroker connects a broker of cfg to url until the test ends,
// with its logs.
func newClusterBroker(t *testing.T, url string, cfg natsjs.Config) (*natsjs.Broker, *lockedBuffer) {
	t.Helper()
	var logs lockedBuffer
	cfg.URL = url
	b, err := natsjs.New(t.Context(), cfg, natsjs.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, &logs
}

// streamReplicas returns the replicas of the stream named name.
func streamReplicas(t *testing.T, b *natsjs.Broker, name string) int {
	t.Helper()
	s, err := b.JetStream().Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().Config.Replicas
}

// TestClusterReplicas, on a real cluster of three nats-servers: the
// streams a broker makes (a topic's, the dead letters', an idempotency
// bucket's) get NATS_REPLICAS; New warns when it finds a cluster and
// one replica; a broker left at the default does not take an existing
// stream's replicas away; and more replicas than servers fail a publish
// saying so.
func TestClusterReplicas(t *testing.T) {
	t.Parallel()
	_, url := natsjs.StartTestCluster(t, 3)
	const warning = "NATS_REPLICAS is 1 on a NATS cluster"

	r3, logs := newClusterBroker(t, url, natsjs.Config{Replicas: 3})
	if strings.Contains(logs.String(), warning) {
		t.Errorf("New with NATS_REPLICAS=3 logged %q:\n%s", warning, logs)
	}
	sub, err := pubsub.NewSubscriber(r3, "cluster.events", "s", func(context.Context, *pingv1.PingRequest) error {
		return pubsub.Permanent(errors.New("refused"))
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](r3, "cluster.events")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the dead letter", func() bool { return deadLetterCount(t, r3, "cluster.events", "s") == 1 })
	if _, err := natsjs.NewIdempotencyStore(t.Context(), r3, "cluster_keys", time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cluster_events", natsjs.DefaultDeadLetterStream, "KV_cluster_keys"} {
		if got := streamReplicas(t, r3, name); got != 3 {
			t.Errorf("stream %s has %d replicas, want NATS_REPLICAS, 3", name, got)
		}
	}

	def, logs := newClusterBroker(t, url, natsjs.Config{})
	if !strings.Contains(logs.String(), warning) {
		t.Errorf("New with the default NATS_REPLICAS on a cluster logged no %q:\n%s", warning, logs)
	}
	defPub, err := pubsub.NewPublisher[pingv1.PingRequest](def, "cluster.events")
	if err != nil {
		t.Fatal(err)
	}
	if err := defPub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil {
		t.Fatal(err)
	}
	if got := streamReplicas(t, def, "cluster_events"); got != 3 {
		t.Errorf("after a publish with the default NATS_REPLICAS, the stream has %d replicas, want the 3 it had", got)
	}

	r5, _ := newClusterBroker(t, url, natsjs.Config{Replicas: 5, PublishTimeout: 10 * time.Second})
	r5Pub, err := pubsub.NewPublisher[pingv1.PingRequest](r5, "cluster.five")
	if err != nil {
		t.Fatal(err)
	}
	err = r5Pub.Publish(t.Context(), &pingv1.PingRequest{Number: 3})
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(fmt.Sprint(err), "NATS_REPLICAS 5") {
		t.Errorf("a publish with NATS_REPLICAS=5 on 3 servers = %v, want Unavailable naming NATS_REPLICAS", err)
	}
}
