package natsjs_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// flightTimeout is the PublishTimeout of the tests below.
const flightTimeout = 2 * time.Second

// outcome is what became of one publish.
type outcome struct {
	id      string
	started time.Time     // when Publish was called
	took    time.Duration // from then until Wait returned
	err     error         // Publish's, or Wait's
}

// publishMany publishes n messages to topic from workers goroutines, each
// with its own id, calls disrupt once half of them are published, and
// returns every outcome once each Wait returned. A Wait still waiting past
// PublishTimeout and a quarter, plus 10s for a loaded machine, fails the
// test: it would have hung.
func publishMany(t *testing.T, b *natsjs.Broker, topic string, n, workers int, disrupt func()) []outcome {
	t.Helper()
	out := make([]outcome, n)
	var published, waits sync.WaitGroup
	half := make(chan struct{})
	var halfOnce sync.Once
	var mu sync.Mutex
	count := 0
	published.Add(workers)
	for w := range workers {
		go func() {
			defer published.Done()
			for i := w; i < n; i += workers {
				o := &out[i]
				o.id, o.started = topic+"-"+strconv.Itoa(i), time.Now()
				conf, err := b.Publish(context.Background(), &pubsub.Message{ID: o.id, Topic: topic, Header: http.Header{}, Data: []byte(o.id)})
				mu.Lock()
				if count++; count == n/2 {
					halfOnce.Do(func() { close(half) })
				}
				mu.Unlock()
				if err != nil {
					o.err = err
					continue
				}
				waits.Add(1)
				go func() {
					defer waits.Done()
					ctx, cancel := context.WithTimeout(context.Background(), flightTimeout*5/4+10*time.Second)
					defer cancel()
					o.err = conf.Wait(ctx)
					o.took = time.Since(o.started)
					if errors.Is(o.err, context.DeadlineExceeded) {
						t.Errorf("Wait on %s still waiting past PublishTimeout and a quarter", o.id)
					}
				}()
			}
		}()
	}
	<-half
	disrupt()
	published.Wait()
	waits.Wait()
	return out
}

// checkOutcomes checks that every publish acknowledged after since (all
// with a zero since) is stored in stream, counted by message id, and that
// every publish freed its room in the window once; it returns how many
// were acknowledged and how many failed.
func checkOutcomes(t *testing.T, b *natsjs.Broker, admin jetstream.JetStream, stream string, out []outcome, since time.Time) (acked, failed int) {
	t.Helper()
	pubsubtest.WaitFor(t, "the window to empty", func() bool {
		window, awaiting := natsjs.InFlight(b)
		return window == 0 && awaiting == 0
	})
	if extra := natsjs.ExtraReleases(b); extra != 0 {
		t.Errorf("%d publishes freed their room in the window twice (each blocked on the empty window)", extra)
	}
	stored := storedIDs(t, admin, stream)
	errs := map[string]int{}
	var longest time.Duration
	for _, o := range out {
		longest = max(longest, o.took)
		if o.err != nil {
			failed++
			errs[o.err.Error()]++
			continue
		}
		acked++
		if !o.started.Before(since) && !stored[o.id] {
			t.Errorf("%s was acknowledged but is not in stream %s", o.id, stream)
		}
	}
	t.Logf("%d acknowledged, %d failed, %d stored, the longest from Publish to Wait's return %v; errors: %v",
		acked, failed, len(stored), longest.Round(time.Millisecond), errs)
	return acked, failed
}

// storedIDs returns the message ids in stream.
func storedIDs(t *testing.T, js jetstream.JetStream, stream string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	if info.State.Msgs == 0 {
		return ids
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for seen := uint64(0); seen < info.State.Msgs; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			ids[m.Headers().Get("Pubsub-Message-Id")] = true
			n++
		}
		if n == 0 {
			t.Fatalf("stream %s: fetched %d of %d messages, then none: %v", stream, seen, info.State.Msgs, batch.Error())
		}
		seen += uint64(n)
	}
	return ids
}

// newFlightBroker connects a broker with a small window and PublishTimeout
// flightTimeout to url, reconnecting at once.
func newFlightBroker(t *testing.T, url string) *natsjs.Broker {
	t.Helper()
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: url, PublishWindow: 256, PublishTimeout: flightTimeout},
		natsjs.WithNATSOptions(nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// flightThrough publishes thousands of messages to topic through b, runs
// disrupt (what) halfway, and checks their outcomes against the stream in
// the server at adminURL: some were acknowledged and some failed.
func flightThrough(t *testing.T, b *natsjs.Broker, adminURL func() string, topic, what string, disrupt func()) {
	t.Helper()
	out := publishMany(t, b, topic, 4000, 8, disrupt)
	acked, failed := checkOutcomes(t, b, adminJS(t, adminURL()), topic, out, time.Time{})
	if acked == 0 || failed == 0 {
		t.Errorf("%d acknowledged and %d failed: the %s came before or after every publish", acked, failed, what)
	}
}

// A server restarted with its storage while thousands of publishes are in
// flight: every Wait returns, every acknowledged message is stored, and
// the window empties.
func TestPublishesInFlightThroughServerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := natsjs.StartTestServer(t, &server.Options{StoreDir: dir})
	port := srv.Addr().(*net.TCPAddr).Port
	b := newFlightBroker(t, srv.ClientURL())
	flightThrough(t, b, func() string { return srv.ClientURL() }, "restart", "restart", func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		srv = natsjs.StartTestServer(t, &server.Options{Port: port, StoreDir: dir})
	})
}

// The connection cut mid-flight (a proxy's), and refused for a while, so
// that nats.go buffers the publishes made meanwhile and sends them once it
// reconnected: every Wait returns, every acknowledged message is stored,
// and the window empties.
func TestPublishesInFlightThroughReconnect(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{})
	p := newCuttingProxy(t, srv.ClientURL())
	b := newFlightBroker(t, p.url)
	flightThrough(t, b, srv.ClientURL, "reconnect", "cut", func() {
		p.refuse.Store(true)
		p.cut(true)
		time.Sleep(300 * time.Millisecond) // publishes buffered meanwhile
		p.refuse.Store(false)
	})
}

// The stream deleted behind the broker's back mid-flight: the publishes
// that no stream answers fail after their retries, the stream is created
// again, and every publish made after the deletion and acknowledged is in
// the new stream.
func TestPublishesInFlightThroughStreamDeleted(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{})
	b := newFlightBroker(t, srv.ClientURL())
	admin := adminJS(t, srv.ClientURL())
	var deleted time.Time
	out := publishMany(t, b, "deleted", 3000, 4, func() {
		if err := admin.DeleteStream(t.Context(), "deleted"); err != nil {
			t.Error(err)
		}
		deleted = time.Now()
	})
	checkOutcomes(t, b, admin, "deleted", out, deleted)
	conf, err := b.Publish(t.Context(), &pubsub.Message{ID: "after", Topic: "deleted", Header: http.Header{}, Data: []byte("x")})
	if err == nil {
		err = conf.Wait(t.Context())
	}
	if err != nil {
		t.Errorf("publish after the stream was deleted and the others settled: %v", err)
	}
}

// A stream that refuses messages (full, with DiscardNew) answers each
// publish past its limit with an error PubAck: those publishes fail with
// JetStream's error, the others are stored, and the window empties; a
// publish whose expected stream is not the topic's fails alike.
func TestPublishesRefusedByTheStream(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{})
	admin := adminJS(t, srv.ClientURL())
	const limit = 100
	if _, err := admin.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "full", Subjects: []string{"full", "_pubsub.redrive.*.full"}, MaxMsgs: limit, Discard: jetstream.DiscardNew,
	}); err != nil {
		t.Fatal(err)
	}
	b := newFlightBroker(t, srv.ClientURL())
	out := publishMany(t, b, "full", 1000, 8, func() {})
	acked, _ := checkOutcomes(t, b, admin, "full", out, time.Time{})
	if acked != limit {
		t.Errorf("%d publishes acknowledged, want the stream's limit, %d", acked, limit)
	}
	for _, o := range out {
		var apiErr *jetstream.APIError
		if o.err != nil && (!errors.As(o.err, &apiErr) || apiErr.ErrorCode != 10077) {
			t.Errorf("%s: %v, want JetStream's error (maximum messages exceeded)", o.id, o.err)
		}
	}

	h := http.Header{}
	h.Set("Nats-Expected-Stream", "other")
	conf, err := b.Publish(t.Context(), &pubsub.Message{Topic: "full", Header: h, Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	var apiErr *jetstream.APIError
	if err := conf.Wait(t.Context()); !errors.As(err, &apiErr) || apiErr.ErrorCode != 10060 {
		t.Errorf("publish expecting another stream: %v, want JetStream's error (expected stream does not match)", err)
	}
	// A publish frees its room in the window as its confirmation settles,
	// which Wait may see first: wait for it, as checkOutcomes does.
	pubsubtest.WaitFor(t, "the window to empty after the last publish", func() bool {
		window, awaiting := natsjs.InFlight(b)
		return window == 0 && awaiting == 0
	})
}

// A publish whose message the server stored, but whose ack the connection
// lost when it dropped, fails at once with nats.ErrDisconnected (seen in a
// rolling deploy's test, a NATS server killed under load): that error
// leaves the outcome unknown, as a timeout does, and the message is in
// the stream. The README's delivery semantics say so.
func TestPublishFailedByADisconnectIsStored(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{})
	var drop atomic.Bool // discard what the server sends: its acks
	var mu sync.Mutex
	var conns []net.Conn
	url := startProxyAccepting(t, srv.ClientURL(), plainCopy, func(dst io.Writer, src io.Reader) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !drop.Load() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}, func(client, server net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, client, server)
		return true
	})
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: url, PublishTimeout: time.Minute},
		natsjs.WithNATSOptions(nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	publish := func(id string) pubsub.Confirmation {
		conf, err := b.Publish(t.Context(), &pubsub.Message{ID: id, Topic: "lostack", Header: http.Header{}, Data: []byte(id)})
		if err != nil {
			t.Fatal(err)
		}
		return conf
	}
	if err := publish("first").Wait(t.Context()); err != nil { // creates the stream
		t.Fatal(err)
	}
	drop.Store(true)
	conf := publish("ack-lost")
	admin := adminJS(t, srv.ClientURL())
	pubsubtest.WaitFor(t, "the server to store the message", func() bool {
		s, err := admin.Stream(t.Context(), "lostack")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context())
		return err == nil && info.State.Msgs == 2
	})
	mu.Lock()
	for _, c := range conns {
		_ = c.Close()
	}
	conns = nil
	mu.Unlock()
	drop.Store(false)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := conf.Wait(ctx); !errors.Is(err, nats.ErrDisconnected) {
		t.Fatalf("the publish whose ack the dropped connection lost: %v, want nats.ErrDisconnected", err)
	}
	if !storedIDs(t, admin, "lostack")["ack-lost"] {
		t.Error("the message whose ack was lost is not in the stream")
	}
}
