package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/nats-io/nats-server/v2/server"
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

// publishOne publishes one message to topic through b, returning
// Publish's error.
func publishOne(t *testing.T, b *natsjs.Broker, topic string) error {
	t.Helper()
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, topic)
	if err != nil {
		t.Fatal(err)
	}
	return pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1})
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
// one replica, advising as many as the servers that run JetStream; a broker left at the default does not take an existing
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
	// Not "set NATS_REPLICAS=3": on a cluster where fewer servers run
	// JetStream, that fails every publish of a new topic.
	const advice = "set NATS_REPLICAS to the number of the cluster's servers that run JetStream"
	if got := logs.String(); !strings.Contains(got, advice) || strings.Contains(got, "NATS_REPLICAS=3") {
		t.Errorf("New with the default NATS_REPLICAS on a cluster logged:\n%s\nwant the advice %q, not NATS_REPLICAS=3 outright", got, advice)
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
	if _, err := natsjs.NewIdempotencyStore(t.Context(), def, "cluster_keys", time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := streamReplicas(t, def, "KV_cluster_keys"); got != 3 {
		t.Errorf("after NewIdempotencyStore with the default NATS_REPLICAS, the bucket has %d replicas, want the 3 it had", got)
	}

	r5, _ := newClusterBroker(t, url, natsjs.Config{Replicas: 5, PublishTimeout: 10 * time.Second})
	err = publishOne(t, r5, "cluster.five")
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(fmt.Sprint(err), "NATS_REPLICAS 5") {
		t.Errorf("a publish with NATS_REPLICAS=5 on 3 servers = %v, want Unavailable naming NATS_REPLICAS", err)
	}
}

// TestIdempotencyStoreLookupFailedKeepsReplicas: with NATS_REPLICAS
// unset, NewIdempotencyStore keeps an existing bucket's replicas, which it
// reads first; a lookup that fails (here refused, as one answered
// "JetStream system temporarily unavailable" during an election is) must
// fail the call, not be taken for a missing bucket and the bucket's
// replicas set to the default 1.
func TestIdempotencyStoreLookupFailedKeepsReplicas(t *testing.T) {
	t.Parallel()
	_, urls := natsjs.StartTestCluster(t, 3, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "admin", Password: "pw"},
			{Username: "svc", Password: "pw", Permissions: &server.Permissions{Publish: &server.SubjectPermission{
				Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.INFO.KV_lookup_keys"},
			}}},
		}
	})
	withUser := func(user string) string { return strings.ReplaceAll(urls, "nats://", "nats://"+user+":pw@") }
	admin, _ := newClusterBroker(t, withUser("admin"), natsjs.Config{Replicas: 3})
	if _, err := natsjs.NewIdempotencyStore(t.Context(), admin, "lookup_keys", time.Hour); err != nil {
		t.Fatal(err)
	}
	svc, _ := newClusterBroker(t, withUser("svc"), natsjs.Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := natsjs.NewIdempotencyStore(ctx, svc, "lookup_keys", time.Hour)
	if got := streamReplicas(t, admin, "KV_lookup_keys"); got != 3 {
		t.Errorf("after NewIdempotencyStore whose lookup failed (%v), the bucket has %d replicas, want the 3 it had", err, got)
	}
	if err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
		t.Errorf("NewIdempotencyStore whose lookup was refused = %v, want an error naming the refusal", err)
	}
}

// TestClusterStreamLeaderLost: on a cluster of three with NATS_REPLICAS=3,
// shutting the server that leads a topic's stream down while publishing
// loses nothing acknowledged (each publish retried with its id until it
// returns nil, as a caller of an Unavailable publish does), and no
// publish fails on a lookup of the stream left unanswered during the
// election (natsjs makes it again).
func TestClusterStreamLeaderLost(t *testing.T) {
	t.Parallel()
	servers, url := natsjs.StartTestCluster(t, 3)
	b, _ := newClusterBroker(t, url, natsjs.Config{Replicas: 3, PublishTimeout: 15 * time.Second})
	var handled sync.Map
	// AckWait 5s rather than 30s: a delivery the lost leader sent and the
	// subscriber never got comes again after AckWait, which held the
	// test's end 30s in 2 runs of 6.
	sub, err := pubsub.NewSubscriber(b, "leader.lost", "s", func(_ context.Context, m *pingv1.PingRequest) error {
		handled.Store(m.GetNumber(), true)
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{AckWait: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "leader.lost")
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range int64(n) {
		if i == n/3 { // the stream exists: shut its leader down
			s, err := b.JetStream().Stream(t.Context(), "leader_lost")
			if err != nil {
				t.Fatal(err)
			}
			leader := s.CachedInfo().Cluster.Leader
			for _, srv := range servers {
				if srv.Name() == leader {
					srv.Shutdown()
				}
			}
		}
		for attempt := 1; ; attempt++ {
			err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: i}, pubsub.WithMessageID(fmt.Sprint(i)))
			if err == nil {
				break
			}
			if strings.Contains(err.Error(), "failed to look up stream") || attempt == 20 {
				t.Fatalf("publish %d, attempt %d: %v", i, attempt, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	pubsubtest.WaitFor(t, "every acknowledged message handled", func() bool {
		for i := range int64(n) {
			if _, ok := handled.Load(i); !ok {
				return false
			}
		}
		return true
	})
}

// TestLeafNodeNoSingleReplicaWarning: a single nats-server that is a leaf
// node of a hub (its own JetStream domain, no cluster of its own) is no
// cluster, though nats-server names its cluster after it in the INFO it
// sends clients (so that the hub tells its leaves apart): New must not
// warn that NATS_REPLICAS=1 loses messages there, nor advise 3, which
// that server cannot place (every publish would fail "no suitable peers
// for placement"). With NATS_REPLICAS=3, New warns rather than refuses,
// and a publish fails FailedPrecondition naming NATS_REPLICAS.
func TestLeafNodeNoSingleReplicaWarning(t *testing.T) {
	t.Parallel()
	hubOpts := &server.Options{ServerName: "hub", LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: -1}}
	natsjs.StartTestServer(t, hubOpts)
	hubURL, err := url.Parse("nats-leaf://127.0.0.1:" + strconv.Itoa(hubOpts.LeafNode.Port)) // resolved by the server once ready
	if err != nil {
		t.Fatal(err)
	}
	leaf := natsjs.StartTestServer(t, &server.Options{
		ServerName: "edge-1", JetStreamDomain: "edge",
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{hubURL}}}},
	})
	b, logs := newClusterBroker(t, leaf.ClientURL(), natsjs.Config{})
	if got := b.Conn().ConnectedClusterName(); got != "edge-1" {
		// nats-server 2.15 names the leaf's cluster after it, which made New warn.
		t.Logf("the leaf's INFO names cluster %q, no longer its server name", got)
	}
	if strings.Contains(logs.String(), "NATS_REPLICAS is 1 on a NATS cluster") {
		t.Errorf("New on a single leaf node server warned of a cluster:\n%s", logs)
	}

	// NATS_REPLICAS=3 there: a warning, not a refusal (a leaf that extends
	// a hub cluster's JetStream takes them); this leaf's JetStream is its
	// own, so a publish fails naming NATS_REPLICAS.
	r3, logs := newClusterBroker(t, leaf.ClientURL(), natsjs.Config{Replicas: 3})
	if !strings.Contains(logs.String(), "NATS_REPLICAS is above 1 on a leaf node") {
		t.Errorf("New with NATS_REPLICAS=3 on a single leaf node logged no warning:\n%s", logs)
	}
	err = publishOne(t, r3, "leaf.three")
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(fmt.Sprint(err), "(NATS_REPLICAS 3): the server is not part of a cluster") {
		t.Errorf("a publish with NATS_REPLICAS=3 on a single leaf node = %v, want FailedPrecondition naming NATS_REPLICAS", err)
	}
}

// TestReplicasOnSingleServer: NATS_REPLICAS above 1 on a server that is
// no cluster, where JetStream refuses every stream of more than one
// replica (error 10074), makes New fail naming NATS_REPLICAS and the mend;
// a broker that connected in the background logs so, and its publishes
// fail FailedPrecondition (no retry mends it) naming NATS_REPLICAS, not
// Unavailable with JetStream's text alone.
func TestReplicasOnSingleServer(t *testing.T) {
	t.Parallel()
	const mend = "set NATS_REPLICAS to 1 or leave it unset"
	srv := natsjs.StartTestServer(t, &server.Options{})
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: srv.ClientURL(), Replicas: 3})
	if err == nil {
		_ = b.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "NATS_REPLICAS is 3") || !strings.Contains(err.Error(), "not part of a cluster") ||
		!strings.Contains(err.Error(), mend) {
		t.Errorf("New with NATS_REPLICAS=3 on one server = %v, want an error naming NATS_REPLICAS and %q", err, mend)
	}

	port := freePort(t)
	late, logs := newUnconnected(t, "nats://127.0.0.1:"+strconv.Itoa(port), natsjs.Config{Replicas: 3})
	t.Cleanup(func() { _ = late.Close() })
	natsjs.StartTestServer(t, &server.Options{Port: port})
	pubsubtest.WaitFor(t, "the broker to connect", func() bool { return late.Check(t.Context()) == nil })
	err = publishOne(t, late, "single.three")
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(fmt.Sprint(err), "(NATS_REPLICAS 3): the server is not part of a cluster; "+mend) {
		t.Errorf("a publish with NATS_REPLICAS=3 on one server = %v, want FailedPrecondition naming NATS_REPLICAS and %q", err, mend)
	}
	pubsubtest.WaitFor(t, "the broker to log that it cannot create streams", func() bool {
		return strings.Contains(logs.String(), "no stream can be created")
	})
}
