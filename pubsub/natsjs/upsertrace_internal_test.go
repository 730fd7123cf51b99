package natsjs

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// A topic's stream set up at once for a publisher (its limits too) and
// for a subscriber, when it lacked a subject pubsub needs (made by hand or
// by a tool with the topic's subject alone), was updated by both, each
// writing the whole config it had read: the subscriber's, written after
// the publisher's, put the stream's MaxAge back, and the publisher's
// NATS_MAX_AGE was lost. In one service, 16 rounds of 30; in two
// instances, each with its broker, 17 of 30 (8 of 60 with the update read
// back at once). One broker's two setups now take turns; across
// instances, the publisher's update is read back streamUpdateSettle later
// and made again.
func TestPublisherAndSubscriberUpdateOneStreamAtOnce(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{Port: -1, StoreDir: t.TempDir()})
	connect := func(maxAge time.Duration) *Broker {
		b, err := New(t.Context(), Config{URL: srv.ClientURL(), MaxAge: maxAge})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	publisher, instance := connect(time.Hour), connect(0)
	for _, tc := range []struct {
		name       string
		subscriber *Broker
	}{
		{"one service", publisher},
		{"two instances", instance},
	} {
		for round := range 30 {
			_ = publisher.js.DeleteStream(t.Context(), "ops_audit")
			if _, err := publisher.js.CreateStream(t.Context(), jetstream.StreamConfig{
				Name: "ops_audit", Subjects: []string{"ops.audit"}, Storage: jetstream.FileStorage,
			}); err != nil {
				t.Fatal(err)
			}
			publisher.streams.Delete("ops.audit") // a new start
			tc.subscriber.streams.Delete("ops.audit")
			var wg sync.WaitGroup
			errs := make([]error, 2)
			wg.Go(func() { errs[0] = publisher.ensureStream(t.Context(), "ops.audit", true) })
			wg.Go(func() { errs[1] = tc.subscriber.ensureStream(t.Context(), "ops.audit", false) })
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			s, err := publisher.js.Stream(t.Context(), "ops_audit")
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			if cfg.MaxAge != time.Hour || !slices.Contains(cfg.Subjects, redriveSubject("*", "ops.audit")) {
				t.Fatalf("%s, round %d: the stream has MaxAge %v and subjects %v, want the publisher's MaxAge (1h) and the re-drive subject",
					tc.name, round, cfg.MaxAge, cfg.Subjects)
			}
		}
	}
}
