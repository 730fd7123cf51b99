package natsjs_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
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
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// collector is a handler that collects the numbers of the messages it
// handles.
type collector struct {
	mu      sync.Mutex
	numbers []int64
}

func (c *collector) handle(_ context.Context, m *pingv1.PingRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.numbers = append(c.numbers, m.GetNumber())
	return nil
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.numbers)
}

// waitAny waits up to within for a handled message, failing the test
// with what otherwise.
func (c *collector) waitAny(t *testing.T, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for c.len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDurableAcrossRestart: what the embedded server acknowledged survives
// its restart, file storage in the data directory.
func TestDurableAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := natsjs.New(t.Context(), natsjs.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](first, "durable")
	if err != nil {
		t.Fatal(err)
	}
	// Create the subscription, then stop consuming it: it keeps its place.
	var before collector
	sub, err := pubsub.NewSubscriber(first, "durable", "s", before.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)()
	for i := range 3 {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second, err := natsjs.New(t.Context(), natsjs.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	var c collector
	next, err := pubsub.NewSubscriber(second, "durable", "s", c.handle, pubsub.WithDelivery(pubsub.DeliveryConfig{AckWait: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, next)
	pubsubtest.WaitFor(t, "the messages stored before the restart", func() bool { return c.len() == 3 })
	if before.len() != 0 {
		t.Errorf("the stopped subscriber handled %d messages", before.len())
	}
}

// TestInProcess: without Listen, the embedded server is reachable from the
// process only, and works the same.
func TestInProcess(t *testing.T) {
	t.Parallel()
	b, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if url := b.ClientURL(); url != "" {
		t.Errorf("ClientURL() = %q without Listen, want none", url)
	}
	var c collector
	sub, err := pubsub.NewSubscriber(b, "inproc", "s", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "inproc")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishBatch(t.Context(), &pingv1.PingRequest{Number: 1}, &pingv1.PingRequest{Number: 2}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "two messages", func() bool { return c.len() == 2 })
}

func TestStreamNameCollision(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	for _, topic := range []string{"a.b", "a_b"} {
		pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, topic)
		if err != nil {
			t.Fatal(err)
		}
		err = pub.Publish(t.Context(), &pingv1.PingRequest{})
		if topic == "a.b" && err != nil {
			t.Fatal(err)
		}
		if topic == "a_b" && (connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "stream a_b exists with subjects")) {
			t.Errorf("publishing to a_b after a.b = %v, want failed_precondition naming the clash", err)
		}
	}
}

// TestStreamSubjectsOverlap: a stream made outside pubsub that holds the
// topic's subject (one that Watermill or an operator made, on "orders.>")
// fails a publish with FailedPrecondition, which no retry mends, naming
// that stream.
func TestStreamSubjectsOverlap(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	if _, err := b.JetStream().CreateStream(t.Context(), jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "orders.created")
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), &pingv1.PingRequest{})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "stream ORDERS") {
		t.Errorf("publishing to orders.created beside stream ORDERS on orders.> = %v, want failed_precondition naming ORDERS", err)
	}
}

// TestStreamKeepsAnOperatorsSubjects: a subject an operator added to a
// topic's stream stays when a publisher sets the stream up, which adds
// the subjects pubsub needs to the stream's, where it put its own in their
// place (messages on the operator's subject then had no stream).
func TestStreamKeepsAnOperatorsSubjects(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	if _, err := b.JetStream().CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "ops_audit", Subjects: []string{"ops.audit", "ops.audit.legacy"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "ops.audit")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	s, err := b.JetStream().Stream(t.Context(), "ops_audit")
	if err != nil {
		t.Fatal(err)
	}
	subjects := s.CachedInfo().Config.Subjects
	if !slices.Contains(subjects, "ops.audit.legacy") || !slices.Contains(subjects, "ops.audit") || len(subjects) < 3 {
		t.Errorf("stream subjects after a publish: %v, want the operator's ops.audit.legacy kept beside pubsub's", subjects)
	}
	if _, err := b.JetStream().Publish(t.Context(), "ops.audit.legacy", []byte("x")); err != nil {
		t.Errorf("publishing on the operator's subject: %v", err)
	}
}

// TestOperatorsSubjectOfAnotherTopic: a topic whose subject an operator
// added to another topic's stream (which pubsub keeps) fails with
// FailedPrecondition telling to remove that subject from that stream, where
// it said that the stream was made outside pubsub and to delete it, which
// would drop the other topic's messages.
func TestOperatorsSubjectOfAnotherTopic(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	publisherOf(t, b, "routed.first")("first") // makes its stream
	s, err := b.JetStream().Stream(t.Context(), "routed_first")
	if err == nil {
		cfg := s.CachedInfo().Config
		cfg.Subjects = append(cfg.Subjects, "routed.second")
		_, err = b.JetStream().UpdateStream(t.Context(), cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	second, err := pubsub.NewPublisher[pingv1.PingRequest](b, "routed.second")
	if err != nil {
		t.Fatal(err)
	}
	err = second.Publish(t.Context(), &pingv1.PingRequest{})
	want := "stream routed_first, pubsub's for topic routed.first, also holds routed.second (a subject added to it by hand): remove routed.second from that stream's subjects"
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), want) {
		t.Errorf("publishing to routed.second, a subject of routed.first's stream = %v, want failed_precondition: ...%s...", err, want)
	}
}

// TestStreamOfOtherKind: a stream with the topic's stream name and
// subject but made by hand as a work queue, or in memory, is refused with
// FailedPrecondition naming it, by a publish and by a subscriber alike,
// rather than adopted: a work queue takes one subscription (the second
// failed with nats' "filtered consumer not unique on workqueue stream"),
// an interest stream drops what every subscription acknowledged, memory
// storage loses acknowledged messages at a server restart.
func TestStreamOfOtherKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, topic string
		retention   jetstream.RetentionPolicy
		storage     jetstream.StorageType
		want        string
	}{
		{name: "work queue", topic: "kind.workqueue", retention: jetstream.WorkQueuePolicy, storage: jetstream.FileStorage, want: "workqueue retention and file storage"},
		{name: "interest", topic: "kind.interest", retention: jetstream.InterestPolicy, storage: jetstream.FileStorage, want: "interest retention and file storage"},
		{name: "memory", topic: "kind.memory", retention: jetstream.LimitsPolicy, storage: jetstream.MemoryStorage, want: "limits retention and memory storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newEmbedded(t)
			stream := strings.ReplaceAll(tc.topic, ".", "_")
			if _, err := b.JetStream().CreateStream(t.Context(), jetstream.StreamConfig{
				Name: stream, Subjects: []string{tc.topic}, Retention: tc.retention, Storage: tc.storage,
			}); err != nil {
				t.Fatal(err)
			}
			want := "stream " + stream + " for " + tc.topic + " has " + tc.want
			pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, tc.topic)
			if err != nil {
				t.Fatal(err)
			}
			err = pub.Publish(t.Context(), &pingv1.PingRequest{})
			if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), want) {
				t.Errorf("Publish = %v, want failed_precondition with %q", err, want)
			}
			checkRefused(t, b, tc.topic, "s", want)
			if tc.retention != jetstream.InterestPolicy {
				return
			}
			// nats-server changes an interest stream's retention to
			// limits (a work queue's, or the storage, it does not): the
			// error says how, and the stream serves once it is done.
			edit := "set its retention to limits (nats stream edit " + stream + " --retention limits)"
			if !strings.Contains(err.Error(), edit) {
				t.Errorf("Publish = %v, want the mend %q", err, edit)
			}
			s, err := b.JetStream().Stream(t.Context(), stream)
			if err != nil {
				t.Fatal(err)
			}
			conf := s.CachedInfo().Config
			conf.Retention = jetstream.LimitsPolicy
			if _, err := b.JetStream().UpdateStream(t.Context(), conf); err != nil {
				t.Fatalf("changing the retention of %s to limits: %v", stream, err)
			}
			if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
				t.Errorf("Publish after the retention was set to limits = %v", err)
			}
		})
	}
}

// TestStreamWithoutAcks: a stream made by hand under the topic's stream
// name that does not acknowledge publishes (nats stream add --no-ack) is
// refused with FailedPrecondition naming the mend, by a publish and a
// subscriber alike, where every publish was stored and still failed
// Unavailable after PublishTimeout (and its retry stored it again); once
// the operator turns acknowledgements on, the publish succeeds.
func TestStreamWithoutAcks(t *testing.T) {
	t.Parallel()
	b, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", PublishTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	s, err := b.JetStream().CreateStream(t.Context(), jetstream.StreamConfig{Name: "noack", Subjects: []string{"noack"}, NoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "noack")
	if err != nil {
		t.Fatal(err)
	}
	want := "stream noack for noack does not acknowledge publishes (no_ack)"
	err = pub.Publish(t.Context(), &pingv1.PingRequest{})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "nats stream edit noack --ack") {
		t.Errorf("Publish = %v, want failed_precondition with %q and the mend", err, want)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Msgs; n != 0 {
		t.Errorf("the refused publish stored %d messages, want 0", n)
	}
	checkRefused(t, b, "noack", "s", want)
	conf := info.Config
	conf.NoAck = false
	if _, err := b.JetStream().UpdateStream(t.Context(), conf); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Errorf("Publish once the stream acknowledges = %v", err)
	}
}

// TestDeadLetterStreamOfOtherKind: a dead-letter stream made by hand as a
// work queue is refused as a topic's is, with the mend that fits it: its
// name is NATS_DEAD_LETTER_STREAM's, no topic's.
func TestDeadLetterStreamOfOtherKind(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	if _, err := b.JetStream().CreateStream(t.Context(), jetstream.StreamConfig{
		Name: natsjs.DefaultDeadLetterStream, Subjects: []string{"_pubsub.dead.>"}, Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	err := b.DeadLetter(t.Context(), &pubsub.DeadLetter{Message: pubsub.Message{ID: "1", Topic: "dead.kind", Data: []byte("1")},
		Subscription: "audit", Attempts: 1, Reason: pubsub.ReasonPermanent, Error: "x", Time: time.Now()})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "workqueue retention") ||
		!strings.Contains(err.Error(), "NATS_DEAD_LETTER_STREAM") || strings.Contains(err.Error(), "topic") {
		t.Errorf("DeadLetter into a work-queue dead-letter stream = %v, want failed_precondition naming NATS_DEAD_LETTER_STREAM as the mend", err)
	}
}

// TestMessageOverTheStreamsLimit: a message over its stream's own size
// limit (an operator's max_msg_size) fails its publish with
// ResourceExhausted, as one over the server's max payload does, not with
// Unavailable, which invites a retry that cannot succeed.
func TestMessageOverTheStreamsLimit(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	if _, err := b.JetStream().CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "small", Subjects: []string{"small", "_pubsub.redrive.*.small"}, MaxMsgSize: 16,
	}); err != nil {
		t.Fatal(err)
	}
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "small")
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), &pingv1.PingRequest{Text: strings.Repeat("x", 64)})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "refused by its stream") {
		t.Errorf("Publish over the stream's max_msg_size = %v, want resource_exhausted", err)
	}
}

// TestPublishToFullStream: a publish that a discard-new stream at its
// limits refuses (JetStream's generic store failure, 10077) fails with
// ResourceExhausted, not with Unavailable, which invited retrying at once.
func TestPublishToFullStream(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	for _, tc := range []struct {
		name string
		cfg  jetstream.StreamConfig
	}{
		{name: "msgs", cfg: jetstream.StreamConfig{MaxMsgs: 1}},
		{name: "bytes", cfg: jetstream.StreamConfig{MaxBytes: 200}},
		{name: "persubject", cfg: jetstream.StreamConfig{MaxMsgsPerSubject: 1, DiscardNewPerSubject: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Name, cfg.Subjects, cfg.Discard = "full"+tc.name, []string{"full" + tc.name, "_pubsub.redrive.*.full" + tc.name}, jetstream.DiscardNew
			if _, err := b.JetStream().CreateStream(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "full"+tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(t.Context(), &pingv1.PingRequest{Text: "first"}); err != nil {
				t.Fatalf("first Publish: %v", err)
			}
			err = pub.Publish(t.Context(), &pingv1.PingRequest{Text: "second"})
			if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "stream is full") {
				t.Errorf("Publish to a full stream = %v, want resource_exhausted", err)
			}
		})
	}
}

// TestConsumerOfOtherKind: a consumer made by hand under a subscription's
// name with settings nats-server cannot update (push delivery, no acks, new
// messages only) makes the subscriber's Check fail with FailedPrecondition
// naming them and the mend, where it showed nats' bare refusal ("ack policy
// can not be updated").
func TestConsumerOfOtherKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		conf jetstream.ConsumerConfig
		want string
	}{
		{name: "acknone", conf: jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy}, want: "has ack policy AckNone"},
		{name: "newonly", conf: jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy}, want: "has deliver policy new"},
		{name: "push", conf: jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, DeliverSubject: "deliver.here"}, want: "has push delivery (to deliver.here)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newEmbedded(t)
			pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "cons")
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
				t.Fatal(err)
			}
			tc.conf.Durable = tc.name
			if tc.conf.DeliverSubject != "" {
				_, err = b.JetStream().CreateOrUpdatePushConsumer(t.Context(), "cons", tc.conf)
			} else {
				_, err = b.JetStream().CreateConsumer(t.Context(), "cons", tc.conf)
			}
			if err != nil {
				t.Fatal(err)
			}
			checkRefused(t, b, "cons", tc.name, "consumer "+tc.name+" of stream cons, made outside pubsub, "+tc.want)
		})
	}
}

func TestCheckAfterClose(t *testing.T) {
	t.Parallel()
	b, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(t.Context()); err != nil {
		t.Fatalf("Check = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(t.Context()); err == nil {
		t.Error("Check after Close = nil, want an error")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := b.Publish(t.Context(), &pubsub.Message{Topic: "t"}); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
}

// TestConnectionCrash: an instance whose connection dies while it handles
// messages (a crashed process) never acknowledges them; another instance
// gets them after AckWait.
func TestConnectionCrash(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t)
	crashing := connectTo(t, owner)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var mu sync.Mutex
	inFlight := 0
	cfg := pubsub.DeliveryConfig{Concurrency: 3, AckWait: 300 * time.Millisecond, DrainTimeout: time.Millisecond}
	sub, err := pubsub.NewSubscriber(crashing, "crash", "s", func(context.Context, *pingv1.PingRequest) error {
		mu.Lock()
		inFlight++
		mu.Unlock()
		<-release
		return nil
	}, pubsub.WithDelivery(cfg))
	if err != nil {
		t.Fatal(err)
	}
	stop := pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](owner, "crash")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishBatch(t.Context(), &pingv1.PingRequest{Number: 1}, &pingv1.PingRequest{Number: 2}, &pingv1.PingRequest{Number: 3}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "three messages in flight", func() bool { mu.Lock(); defer mu.Unlock(); return inFlight == 3 })
	crashing.Conn().Close() // no drain, no flush: the process is gone
	stop()

	var c collector
	cfg.DrainTimeout = 0
	next, err := pubsub.NewSubscriber(owner, "crash", "s", c.handle, pubsub.WithDelivery(cfg))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, next)
	pubsubtest.WaitFor(t, "the three messages at the next instance", func() bool { return c.len() == 3 })
}

func TestIdempotencyStore(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t)
	a, err := natsjs.NewIdempotencyStore(t.Context(), owner, "handled", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := natsjs.NewIdempotencyStore(t.Context(), connectTo(t, owner), "handled", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key := "profiles.changed/audit/ID with spaces & symbols"
	if seen, err := b.Seen(t.Context(), key); err != nil || seen {
		t.Fatalf("Seen before Record = %v, %v", seen, err)
	}
	if err := a.Record(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if seen, err := b.Seen(t.Context(), key); err != nil || !seen {
		t.Errorf("Seen from another instance after Record = %v, %v; want true", seen, err)
	}
	if _, err := natsjs.NewIdempotencyStore(t.Context(), owner, "bad", 0); err == nil {
		t.Error("NewIdempotencyStore with ttl 0 = nil error")
	}
}

// TestConsumerDeletedIsRecreated: a subscription whose consumer an operator
// deletes creates it again and goes on consuming.
func TestConsumerDeletedIsRecreated(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	var c collector
	sub, err := pubsub.NewSubscriber(b, "fragile", "s", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "fragile")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the first message", func() bool { return c.len() == 1 })
	if err := b.JetStream().DeleteConsumer(t.Context(), "fragile", "s"); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil {
		t.Fatal(err)
	}
	// The new consumer starts from what the stream retains: message 1 again,
	// then message 2.
	pubsubtest.WaitFor(t, "the message published after the deletion", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.Contains(c.numbers, 2)
	})
}

// TestVerdictAfterStreamRecreated: a handler that finishes after its
// stream was deleted and created again (by the subscription itself) does
// not acknowledge the message the new stream numbers as its own was:
// JetStream acknowledges by stream sequence, and message 2, published
// after, failing its first attempt, would never come again.
func TestVerdictAfterStreamRecreated(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	releaseOld, newStarted, releaseNew := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	attempts := map[int64]int{}
	sub, err := pubsub.NewSubscriber(b, "stale", "s", func(_ context.Context, m *pingv1.PingRequest) error {
		mu.Lock()
		attempts[m.GetNumber()]++
		n := attempts[m.GetNumber()]
		mu.Unlock()
		switch {
		case m.GetNumber() == 1 && n == 1:
			<-releaseOld
		case m.GetNumber() == 2 && n == 1:
			close(newStarted)
			<-releaseNew
			return errors.New("transient")
		}
		return nil
	}, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 2, Backoff: pubsub.Backoff{Initial: 100 * time.Millisecond, Max: 100 * time.Millisecond}}))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "stale")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "message 1 in its handler", func() bool { mu.Lock(); defer mu.Unlock(); return attempts[1] == 1 })
	if err := b.JetStream().DeleteStream(t.Context(), "stale"); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the consumer created again", func() bool {
		_, err := b.JetStream().Consumer(t.Context(), "stale", "s")
		return err == nil
	})
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil { // stream sequence 1
		t.Fatal(err)
	}
	<-newStarted
	close(releaseOld) // message 1's handler succeeds: its ack names stream sequence 1
	time.Sleep(200 * time.Millisecond)
	close(releaseNew) // message 2's first attempt fails: it must come again
	pubsubtest.WaitFor(t, "message 2 again after its failure", func() bool { mu.Lock(); defer mu.Unlock(); return attempts[2] >= 2 })
}

// TestForeignProducer: a message published with plain NATS, lower-case
// headers and no pubsub headers is delivered like any other; a
// HeaderOriginalTime it carries (only a re-drive's counts) does not forge
// MessageInfo.Time.
func TestForeignProducer(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	got := make(chan pubsub.MessageInfo, 1)
	sub, err := pubsub.NewSubscriber(b, "foreign", "s", func(ctx context.Context, m *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		if m.GetNumber() == 7 {
			got <- info
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub) // creates the stream
	data, err := proto.Marshal(&pingv1.PingRequest{Number: 7})
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("foreign")
	msg.Data = data
	msg.Header["traceparent"] = []string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	msg.Header["content-type"] = []string{"application/proto"}
	msg.Header["pubsub-original-time"] = []string{"2001-02-03T04:05:06Z"}
	before := time.Now()
	if _, err := b.JetStream().PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	info := <-got
	if h := info.Header.Get(pubsub.HeaderOriginalTime); h != "" || info.Time.Before(before.Add(-time.Minute)) {
		t.Errorf("MessageInfo.Time = %v, header %s = %q; want the stream's time (published at %v), no header", info.Time, pubsub.HeaderOriginalTime, h, before)
	}
	if tp := info.Header.Get("Traceparent"); !strings.HasPrefix(tp, "00-0af7651916cd43dd") {
		t.Errorf("traceparent header = %q, want the producer's", tp)
	}
	stored, _ := strings.CutPrefix(info.ID, "foreign:1:")
	if _, err := strconv.ParseUint(stored, 10, 64); err != nil || info.Attempt != 1 {
		t.Errorf("MessageInfo = %+v, want id foreign:1:<stored time> (stream, sequence, Unix ns) and attempt 1", info)
	}
}

// TestForeignProducerLowerCaseHeaders: pubsub's own headers, written in
// lower case by a producer that is not pubsub, are read as pubsub's: a
// message of another type is dead-lettered as such, and one compressed as
// undecodable.
func TestForeignProducerLowerCaseHeaders(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	sub, err := pubsub.NewSubscriber(b, "foreign.lower", "s", func(context.Context, *pingv1.PingRequest) error {
		t.Error("handler called")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub) // creates the stream
	for id, header := range map[string]nats.Header{
		"wrong-type": {"pubsub-type": {"connectkit.ping.v1.SumRequest"}},
		"compressed": {"content-encoding": {"gzip"}},
	} {
		msg := &nats.Msg{Subject: "foreign.lower", Header: header}
		msg.Header["nats-msg-id"] = []string{id}
		if _, err := b.JetStream().PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]pubsub.Reason{"wrong-type": pubsub.ReasonTypeMismatch, "compressed": pubsub.ReasonUndecodable}
	got := map[string]pubsub.Reason{}
	pubsubtest.WaitFor(t, "two dead letters", func() bool {
		for dl, err := range b.DeadLetters(t.Context(), "foreign.lower", "s") {
			if err != nil {
				t.Fatal(err)
			}
			got[dl.Message.ID] = dl.Reason
		}
		return len(got) == len(want)
	})
	if !maps.Equal(got, want) {
		t.Errorf("dead letters' reasons by id = %v, want %v", got, want)
	}
}

// TestFilteredConsumerIsWidened: a subscription's consumer made by an
// earlier version, filtered on the topic and its re-drive subject, is
// updated to read the whole stream, and goes on from where it was.
func TestFilteredConsumerIsWidened(t *testing.T) {
	t.Parallel()
	// nats.go's expiry: a consumer the server does not tell of new messages
	// would find the second one only after 15 s (or 30), well after the
	// 5 s this test allows.
	b, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir(), PullExpiry: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "widened")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JetStream().CreateOrUpdateConsumer(t.Context(), "widened", jetstream.ConsumerConfig{
		Durable:        "s",
		FilterSubjects: []string{"widened", "_pubsub.redrive.s.widened"},
		AckPolicy:      jetstream.AckExplicitPolicy,
		MaxDeliver:     -1,
	}); err != nil {
		t.Fatal(err)
	}
	var c collector
	sub, err := pubsub.NewSubscriber(b, "widened", "s", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); c.len() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("handled %d of 2 messages in 5 s: the widened consumer is not told of new messages", c.len())
		}
	}
	cons, err := b.JetStream().Consumer(t.Context(), "widened", "s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := cons.CachedInfo().Config; cfg.FilterSubject != ">" || len(cfg.FilterSubjects) != 0 {
		t.Errorf("consumer filters %q %v, want the whole stream (>)", cfg.FilterSubject, cfg.FilterSubjects)
	}
}

// TestPullExpiry: a subscription's pull requests last Config.PullExpiry and
// ask for a heartbeat every second, or every half expiry if that is
// shorter; an idle subscription makes a new one when the last expires, so
// that a pull request the server stopped serving holds it no longer than
// that.
func TestPullExpiry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ expiry, heartbeat time.Duration }{
		{4 * time.Second, time.Second},
		{time.Second, 500 * time.Millisecond},
	} {
		t.Run(tc.expiry.String(), func(t *testing.T) {
			t.Parallel()
			testPullExpiry(t, tc.expiry, tc.heartbeat)
		})
	}
}

func testPullExpiry(t *testing.T, expiry, heartbeat time.Duration) {
	b, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", PullExpiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	// Pull requests are messages on the consumer's NEXT subject, which any
	// client of the account may watch.
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pulls, err := nc.SubscribeSync("$JS.API.CONSUMER.MSG.NEXT.idle_topic.watched")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var c collector
	sub, err := pubsub.NewSubscriber(b, "idle.topic", "watched", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	var arrived []time.Time
	for len(arrived) < 2 {
		m, err := pulls.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("pull request %d of an idle subscription: %v", len(arrived)+1, err)
		}
		var req struct {
			Expires   time.Duration `json:"expires"`
			Heartbeat time.Duration `json:"idle_heartbeat"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Fatalf("pull request %q: %v", m.Data, err)
		}
		if req.Expires != expiry || req.Heartbeat != heartbeat {
			t.Fatalf("pull request expires in %v with heartbeats every %v, want %v and %v: %s", req.Expires, req.Heartbeat, expiry, heartbeat, m.Data)
		}
		arrived = append(arrived, time.Now())
	}
	if gap := arrived[1].Sub(arrived[0]); gap > expiry+time.Second {
		t.Errorf("the idle subscription renewed its pull request after %v, want about %v", gap, expiry)
	}
}

// TestPublishWaitsBeforeRecreatingALostStream: a publish that finds its
// stream deleted behind the broker's back makes the next publish create it
// again, but not before healDelay has passed since: nats-server answers a
// deletion before it has moved the stream's files, and a stream of the same
// name made within milliseconds loses its directory and never acknowledges
// a write. The next publish waits and then succeeds.
func TestPublishWaitsBeforeRecreatingALostStream(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "lost")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.JetStream().DeleteStream(t.Context(), "lost"); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err == nil {
		t.Fatal("Publish to a deleted stream succeeded")
	}
	failed := time.Now()
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 3}); err != nil {
		t.Fatalf("Publish after the stream was lost: %v", err)
	}
	checkCreatedAfterHealDelay(t, b, "lost", failed)
	s, err := b.JetStream().Stream(t.Context(), "lost")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// TestSubscriberKeepsStreamLimits: a service that only consumes a topic
// leaves the limits its producer set on the topic's stream, whatever its
// own Config says (NATS_MAX_AGE is per process): a subscriber of another
// broker once set the stream's MaxAge to its own, so each service's start
// set it in turn. A subscriber still creates a stream that is missing, and
// a publish sets the limits, also after its own broker's subscriber set the
// stream up.
func TestSubscriberKeepsStreamLimits(t *testing.T) {
	t.Parallel()
	owner := newListening(t, natsjs.Config{MaxAge: time.Hour})
	maxAge := func() time.Duration {
		t.Helper()
		s, err := owner.JetStream().Stream(t.Context(), "limits_kept")
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.MaxAge
	}
	subscribe := func(b pubsub.Broker, subscription string) *collector {
		t.Helper()
		var c collector
		sub, err := pubsub.NewSubscriber(b, "limits.kept", subscription, c.handle)
		if err != nil {
			t.Fatal(err)
		}
		pubsubtest.Start(t, sub)
		return &c
	}

	// A consumer of the topic starts first: it creates the stream, with
	// its own limits (the default MaxAge).
	first := subscribe(connectTo(t, owner), "search")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := owner.JetStream().Stream(t.Context(), "limits_kept"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscriber did not create the missing stream within 10s")
		}
	}
	if got := maxAge(); got != natsjs.DefaultMaxAge {
		t.Fatalf("stream made by the subscriber: MaxAge %v, want %v", got, natsjs.DefaultMaxAge)
	}

	// The producer subscribes too, then publishes: its limits apply.
	subscribe(owner, "audit")
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](owner, "limits.kept")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	if got := maxAge(); got != time.Hour {
		t.Fatalf("after the producer's publish: MaxAge %v, want its 1h", got)
	}
	first.waitAny(t, 10*time.Second, "the first consumer")

	// Another consuming service starts (a broker of its own, whose
	// subscriber sets the stream up anew): the producer's limits stay.
	subscribe(connectTo(t, owner), "index").waitAny(t, 10*time.Second, "the other consumer")
	if got := maxAge(); got != time.Hour {
		t.Errorf("after a consumer of another service started: MaxAge %v, want the producer's 1h", got)
	}
}

// TestDeadLetterStreamKeepsLimits: the dead-letter stream is shared by
// every service of a NATS system; the first dead letter creates it with
// its broker's DuplicateWindow (and Replicas), and a dead letter of
// another service, whose Config differs, leaves them as they are: each
// service once set them to its own at its first dead letter.
func TestDeadLetterStreamKeepsLimits(t *testing.T) {
	t.Parallel()
	owner := newListening(t, natsjs.Config{DuplicateWindow: time.Minute})
	deadLetter := func(b *natsjs.Broker, id string) {
		t.Helper()
		dl := &pubsub.DeadLetter{Message: pubsub.Message{ID: id, Topic: "dead.kept", Data: []byte(id)},
			Subscription: "audit", Attempts: 1, Reason: pubsub.ReasonPermanent, Error: "x", Time: time.Now()}
		if err := b.DeadLetter(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
	}
	stream := func() *jetstream.StreamInfo {
		t.Helper()
		s, err := owner.JetStream().Stream(t.Context(), natsjs.DefaultDeadLetterStream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo()
	}

	deadLetter(owner, "1")
	if got := stream().Config.Duplicates; got != time.Minute {
		t.Fatalf("dead-letter stream created by the first dead letter: duplicate window %v, want its broker's 1m", got)
	}
	// An operator bounds how long dead letters are kept (nats stream
	// edit), which natsjs never sets.
	edited := stream().Config
	edited.MaxAge = 720 * time.Hour
	if _, err := owner.JetStream().UpdateStream(t.Context(), edited); err != nil {
		t.Fatal(err)
	}
	deadLetter(connectTo(t, owner), "2") // the default window, 2m
	if info := stream(); info.Config.Duplicates != time.Minute || info.Config.MaxAge != 720*time.Hour || info.State.Msgs != 2 {
		t.Errorf("after another service's dead letter: duplicate window %v, MaxAge %v and %d dead letters; want the creator's 1m, the operator's 720h and 2",
			info.Config.Duplicates, info.Config.MaxAge, info.State.Msgs)
	}
}

// newListening returns a broker of cfg whose embedded server, on its own
// storage, listens on a free loopback port, for other brokers (services)
// to connect to it (connectTo).
func newListening(t *testing.T, cfg natsjs.Config) *natsjs.Broker {
	t.Helper()
	cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:-1"
	b, err := natsjs.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// checkRefused runs a subscriber of topic until the test ends and waits,
// 20s at most, for its Check to fail with FailedPrecondition and want, and
// for the refusal to be logged at error once, then at debug when it
// repeats (the same text on each retry).
func checkRefused(t *testing.T, b *natsjs.Broker, topic, subscription, want string) {
	t.Helper()
	logs := checkFails(t, b, topic, subscription, connect.CodeFailedPrecondition, want)
	const line = ` msg="pubsub: failed to subscribe; retrying"`
	pubsubtest.WaitFor(t, "a repeated refusal", func() bool { return strings.Count(logs.String(), line) >= 2 })
	if got := logs.String(); strings.Count(got, "level=ERROR"+line) != 1 || !strings.Contains(got, "level=DEBUG"+line) {
		t.Errorf("log = %s, want the refusal at error once, then at debug", got)
	}
}

// checkFails runs a subscriber of topic on b until its Check fails with
// code and an error that has want, and returns its log (debug and above).
func checkFails(t *testing.T, b *natsjs.Broker, topic, subscription string, code connect.Code, want string) *lockedBuffer {
	t.Helper()
	logs := new(lockedBuffer)
	sub, err := pubsub.NewSubscriber(b, topic, subscription, func(context.Context, *pingv1.PingRequest) error { return nil },
		pubsub.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		err = sub.Check(t.Context())
		if connect.CodeOf(err) == code && strings.Contains(err.Error(), want) {
			return logs
		}
	}
	t.Fatalf("subscriber's Check = %v, want %v with %q", err, code, want)
	return nil
}

// TestConsumerRefusedForOtherReasons: a consumer the server will not make
// for another reason than a hand-made one in the way (here its
// MaxAckPending over the server's limit; a create that timed out is the
// costly case, each lookup waiting the default 5s) fails as the server
// said, without looking the consumer up, as pull and as push consumer, for
// nothing at every retry.
func TestConsumerRefusedForOtherReasons(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{JetStreamLimits: server.JSLimitOpts{MaxAckPending: 10}})
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: srv.ClientURL(), MaxAckPending: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	lookups, err := nc.SubscribeSync("$JS.API.CONSUMER.INFO.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	checkFails(t, b, "limited", "s", connect.CodeUnknown, "max ack pending")
	// The lookups, if any, reached the server before the refusal reached
	// Check: nc has them once its own round trip is over.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := lookups.Pending(); n != 0 {
		t.Errorf("%d consumer lookups after the server refused the consumer for its MaxAckPending, want 0", n)
	}
}
