package natsjs

import (
	"context"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connectkit/connectkit/pubsub"
)

// subscribeToTestServer subscribes to a test server standing for an
// external one, and returns the server and the subscription's consumer.
func subscribeToTestServer(t *testing.T) (*server.Server, *consumer) {
	t.Helper()
	srv := startTestServer(t, &server.Options{})
	b, err := New(t.Context(), Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	pc, err := b.Subscribe(t.Context(), pubsub.ConsumerConfig{Topic: "healing", Subscription: "s", AckWait: time.Second, Prefetch: 1}, func(pubsub.Delivery) {})
	if err != nil {
		t.Fatal(err)
	}
	return srv, pc.(*consumer)
}

// While a consumer the server lost is being made again, and cannot be, Err
// says so (the subscriber's Check fails with it); once drained, it says
// nothing.
func TestConsumerErrWhileHealing(t *testing.T) {
	t.Parallel()
	srv, c := subscribeToTestServer(t)
	if err := c.Err(); err != nil {
		t.Fatalf("Err = %v while consuming", err)
	}
	srv.Shutdown() // nothing can be made again now
	c.onError(nil, jetstream.ErrConsumerDeleted)
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "creating it again") {
		t.Errorf("Err = %v while healing, want why nothing is consumed", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_ = c.Drain(ctx)
	if err := c.Err(); err != nil {
		t.Errorf("Err = %v after Drain, want nil", err)
	}
}

// Draining a consumer ends its healing at once, though the broker stays
// open: heal neither finishes its try (up to 30 s while no server answers)
// nor sleeps out its backoff (up to 30 s) first.
func TestDrainEndsHealing(t *testing.T) {
	t.Parallel()
	srv, c := subscribeToTestServer(t)
	srv.Shutdown() // no server answers: heal's try waits
	c.onError(nil, jetstream.ErrConsumerDeleted)
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_ = c.Drain(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		healing := c.healing
		c.mu.Unlock()
		if !healing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("heal still runs 5s after Drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// canonical gives every key the form http.Header.Get looks up, whether
// knownCanonical vouches for it or textproto checks it: the keys pubsub and
// the interceptors write stay as they are, and those of other clients, in
// any case, are found as the canonical keys of their names.
func TestCanonical(t *testing.T) {
	t.Parallel()
	known := []string{pubsub.HeaderContentType, pubsub.HeaderMessageType, headerMessageID, headerMsgID,
		"X-Request-Id", "Traceparent", "Tracestate", "Baggage"}
	for _, k := range known {
		if !knownCanonical(k) || textproto.CanonicalMIMEHeaderKey(k) != k {
			t.Errorf("key %q: knownCanonical %v, canonical form %q", k, knownCanonical(k), textproto.CanonicalMIMEHeaderKey(k))
		}
		for _, other := range []string{strings.ToLower(k), strings.ToUpper(k)} {
			if knownCanonical(other) {
				t.Errorf("knownCanonical(%q) = true", other)
			}
		}
	}
	tests := []struct {
		name   string
		header http.Header // as nats.go decodes it: keys in the case they came in
		want   http.Header
	}{
		{
			name:   "pubsub's",
			header: http.Header{"Content-Type": {"application/proto"}, "Pubsub-Type": {"a.B"}, "Pubsub-Message-Id": {"1"}, "X-Request-Id": {"r"}, "Traceparent": {"t"}},
			want:   http.Header{"Content-Type": {"application/proto"}, "Pubsub-Type": {"a.B"}, "Pubsub-Message-Id": {"1"}, "X-Request-Id": {"r"}, "Traceparent": {"t"}},
		},
		{
			name:   "another client's, lower case",
			header: http.Header{"content-type": {"application/json"}, "pubsub-type": {"a.B"}, "traceparent": {"t"}, "x-custom": {"c"}},
			want:   http.Header{"Content-Type": {"application/json"}, "Pubsub-Type": {"a.B"}, "Traceparent": {"t"}, "X-Custom": {"c"}},
		},
		{
			name:   "another client's, upper case",
			header: http.Header{"CONTENT-TYPE": {"application/json"}, "NATS-MSG-ID": {"1"}},
			want:   http.Header{"Content-Type": {"application/json"}, "Nats-Msg-Id": {"1"}},
		},
		{
			name:   "not a token: kept as it is",
			header: http.Header{"x y": {"1"}},
			want:   http.Header{"x y": {"1"}},
		},
		{
			name:   "two cases of one key: merged, the canonical one's values first",
			header: http.Header{"Content-Type": {"application/proto"}, "content-type": {"application/json"}},
			want:   http.Header{"Content-Type": {"application/proto", "application/json"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := canonical(tc.header); !maps.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("canonical = %v, want %v", got, tc.want)
			}
		})
	}
}

// replyMsg is a jetstream.Msg of a reply subject and headers alone.
type replyMsg struct {
	jetstream.Msg
	reply  string
	header map[string][]string
}

func (m *replyMsg) Reply() string        { return m.reply }
func (m *replyMsg) Subject() string      { return "t" }
func (m *replyMsg) Data() []byte         { return nil }
func (m *replyMsg) Headers() nats.Header { return m.header }

// TestIDsOfOtherProducersDoNotRepeat: a message from a producer that is
// not pubsub (no message id) gets an id of its stream, sequence and stored
// time, so that another message which a stream created again puts at the
// same sequence has another id: with the stream and sequence alone,
// Idempotent skipped it as handled and pubsub could take it for a copy of
// the first, acknowledging it unhandled. Every delivery tells its sequence.
func TestIDsOfOtherProducersDoNotRepeat(t *testing.T) {
	t.Parallel()
	first := newDelivery(&replyMsg{reply: "$JS.ACK.S.C.1.5.7.1700000000000000000.0"})
	again := newDelivery(&replyMsg{reply: "$JS.ACK.S.C.2.5.8.1700000000000000000.0"})
	recreated := newDelivery(&replyMsg{reply: "$JS.ACK.S.C.1.5.1.1700000009000000000.0"})
	if first.msg.ID != "S:5:1700000000000000000" || again.msg.ID != first.msg.ID {
		t.Errorf("ids %q and, delivered again, %q; want S:5:1700000000000000000 for both", first.msg.ID, again.msg.ID)
	}
	if recreated.msg.ID == first.msg.ID {
		t.Errorf("another message at the same sequence of a stream created again has the same id %q", first.msg.ID)
	}
	for _, tc := range []struct {
		name   string
		header map[string][]string
	}{
		{name: "pubsub", header: map[string][]string{headerMsgID: {"id-1"}}},
		{name: "re-driven", header: map[string][]string{headerMessageID: {"id-1"}}},
		{name: "other producer"},
	} {
		if d := newDelivery(&replyMsg{reply: "$JS.ACK.S.C.2.5.7.1700000000000000000.0", header: tc.header}); d.Sequence() != 5 {
			t.Errorf("%s: Sequence() = %d (id %q), want 5", tc.name, d.Sequence(), d.msg.ID)
		}
	}
}
