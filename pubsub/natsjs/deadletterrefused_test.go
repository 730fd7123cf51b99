package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDeadLetterRefused: a dead-letter stream whose limits refuse a dead
// letter (an operator's max_msg_size, or max_bytes with discard new) does
// not lose the message: it is not terminated but delivered again, and the
// log and pubsub_dead_letter_errors_total say why, with the Connect code a
// publish refused so gets (resource_exhausted). Once the operator lifts
// the limit, the message is dead-lettered.
func TestDeadLetterRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		limit func(*jetstream.StreamConfig)
		want  string
	}{
		{name: "max_msg_size", limit: func(c *jetstream.StreamConfig) { c.MaxMsgSize = 64 }, want: "message size exceeds maximum allowed"},
		{name: "max_bytes discard new", limit: func(c *jetstream.StreamConfig) { c.MaxBytes, c.Discard = 64, jetstream.DiscardNew }, want: "maximum bytes exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newEmbedded(t)
			conf := jetstream.StreamConfig{
				Name: natsjs.DefaultDeadLetterStream, Subjects: []string{"_pubsub.dead.>"},
				Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			}
			tc.limit(&conf)
			s, err := b.JetStream().CreateStream(t.Context(), conf)
			if err != nil {
				t.Fatal(err)
			}
			var logs lockedBuffer
			reg := prometheus.NewRegistry()
			sub, err := pubsub.NewSubscriber(b, "refused", "s", func(context.Context, *pingv1.PingRequest) error {
				return pubsub.Permanent(errors.New("never"))
			}, pubsub.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))), pubsub.WithRegistry(reg),
				pubsub.WithDelivery(pubsub.DeliveryConfig{Backoff: pubsub.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}}))
			if err != nil {
				t.Fatal(err)
			}
			pubsubtest.Start(t, sub)
			pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "refused")
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(t.Context(), &pingv1.PingRequest{Text: strings.Repeat("x", 100)}); err != nil {
				t.Fatal(err)
			}
			pubsubtest.WaitFor(t, "two refused dead letters", func() bool { return strings.Count(logs.String(), tc.want) >= 2 })
			line := logs.String()
			line = line[:strings.Index(line, "\n")]
			for _, want := range []string{`"msg":"pubsub: failed to store the dead letter; the message will be delivered again"`, `"code":"resource_exhausted"`, `"reason":"permanent"`, tc.want} {
				if !strings.Contains(line, want) {
					t.Errorf("log line %s\nlacks %s", line, want)
				}
			}
			if n := deadLetterErrors(t, reg); n < 2 {
				t.Errorf("pubsub_dead_letter_errors_total{code=resource_exhausted} = %v, want 2 or more", n)
			}
			// The message is not terminated: lifting the limit dead-letters it.
			info, err := s.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			lifted := info.Config
			lifted.MaxMsgSize, lifted.MaxBytes, lifted.Discard = -1, -1, jetstream.DiscardOld
			if _, err := b.JetStream().UpdateStream(t.Context(), lifted); err != nil {
				t.Fatal(err)
			}
			pubsubtest.WaitFor(t, "the dead letter once the limit is lifted", func() bool { return deadLetterCount(t, b, "refused", "s") == 1 })
		})
	}
}

// deadLetterErrors returns pubsub_dead_letter_errors_total{topic="refused",
// subscription="s", code="resource_exhausted"} in reg.
func deadLetterErrors(tb testing.TB, reg *prometheus.Registry) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "pubsub_dead_letter_errors_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["topic"] == "refused" && labels["subscription"] == "s" && labels["code"] == "resource_exhausted" {
				return m.GetCounter().GetValue()
			}
		}
	}
	tb.Fatal("no pubsub_dead_letter_errors_total{topic=refused,subscription=s,code=resource_exhausted}")
	return 0
}
