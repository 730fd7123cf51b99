package natsjs

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// A service that publishes to a topic and subscribes to it sets up the
// topic's stream twice at its start, for the publisher (its limits too)
// and for the subscriber, at once. When the stream lacked a subject pubsub
// needs (made by hand or by a tool with the topic's subject alone), both
// updated it, each writing the whole config it had read: the subscriber's,
// written after the publisher's, put the stream's MaxAge back, and the
// publisher's NATS_MAX_AGE was lost (16 rounds of 30). The two now take
// turns, and each round keeps both the subject and the MaxAge.
func TestPublisherAndSubscriberUpdateOneStreamAtOnce(t *testing.T) {
	t.Parallel()
	srv := startTestServer(t, &server.Options{Port: -1, StoreDir: t.TempDir()})
	b, err := New(t.Context(), Config{URL: srv.ClientURL(), MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	for round := range 30 {
		_ = b.js.DeleteStream(t.Context(), "ops_audit")
		if _, err := b.js.CreateStream(t.Context(), jetstream.StreamConfig{
			Name: "ops_audit", Subjects: []string{"ops.audit"}, Storage: jetstream.FileStorage,
		}); err != nil {
			t.Fatal(err)
		}
		b.streams.Delete("ops.audit") // a new start
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, limits := range []bool{true, false} { // the publisher's, the subscriber's
			wg.Go(func() { errs[i] = b.ensureStream(t.Context(), "ops.audit", limits) })
		}
		wg.Wait()
		if err := errs[0]; err != nil {
			t.Fatal(err)
		}
		if err := errs[1]; err != nil {
			t.Fatal(err)
		}
		s, err := b.js.Stream(t.Context(), "ops_audit")
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if cfg.MaxAge != time.Hour || !slices.Contains(cfg.Subjects, redriveSubject("*", "ops.audit")) {
			t.Fatalf("round %d: the stream has MaxAge %v and subjects %v, want the publisher's MaxAge (1h) and the re-drive subject", round, cfg.MaxAge, cfg.Subjects)
		}
	}
}
