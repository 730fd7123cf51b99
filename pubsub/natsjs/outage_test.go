package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// deadLetterCount counts the dead letters of a topic and subscription.
func deadLetterCount(tb testing.TB, b *natsjs.Broker, topic, subscription string) int {
	tb.Helper()
	n := 0
	for _, err := range b.DeadLetters(context.Background(), topic, subscription) {
		if err != nil {
			tb.Fatalf("DeadLetters: %v", err)
		}
		n++
	}
	return n
}

// TestDeadLetterStreamDeletedIsRecreated: when an operator deletes the
// dead-letter stream, the next dead letter creates it again, instead of
// failing (and being retried) for as long as the process runs.
func TestDeadLetterStreamDeletedIsRecreated(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	sub, err := pubsub.NewSubscriber(b, "dlgone", "s", func(context.Context, *pingv1.PingRequest) error {
		return pubsub.Permanent(errors.New("refused"))
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "dlgone")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the first dead letter", func() bool { return deadLetterCount(t, b, "dlgone", "s") == 1 })
	if err := b.JetStream().DeleteStream(t.Context(), natsjs.DefaultDeadLetterStream); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the dead letter after the stream's deletion", func() bool { return deadLetterCount(t, b, "dlgone", "s") == 1 })
	checkCreatedAfterHealDelay(t, b, natsjs.DefaultDeadLetterStream, deleted)
}

// checkCreatedAfterHealDelay fails t unless stream was created again at
// least the heal delay (1s) after since: see natsjs's streamLost.
func checkCreatedAfterHealDelay(t *testing.T, b *natsjs.Broker, stream string, since time.Time) {
	t.Helper()
	s, err := b.JetStream().Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.CachedInfo().Created.Sub(since); d < 900*time.Millisecond {
		t.Errorf("stream %s created again %v after it was lost; want the heal delay (1s) first", stream, d)
	}
}

// TestURLSecretsHidden: the password or token of NATS_URL appears in no
// error, neither when connecting fails (with NoConnectRetry; the warning
// logged without it is TestStartWhileNATSUnreachable's) nor in Check once
// connected.
func TestURLSecretsHidden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, want string
	}{
		{name: "password", url: "nats://alice:s3cret@127.0.0.1:1", want: "NATS at nats://alice:xxxxx@127.0.0.1:1"},
		{name: "token", url: "nats://s3cret@127.0.0.1:1", want: "NATS at nats://xxxxx@127.0.0.1:1"},
		{name: "second of two", url: "nats://127.0.0.1:1, nats://bob:s3cret@127.0.0.1:2", want: "nats://127.0.0.1:1, nats://bob:xxxxx@127.0.0.1:2"},
		{name: "unparsable", url: "nats://alice:s3cret@127.0.0.1:port", want: "alice:xxxxx@127.0.0.1:port"},
		// A password or token with a character that ends the host part
		// unescaped, as base64 ones have: url.Parse takes part of the
		// secret for the host and quotes it.
		{name: "password with a slash", url: "nats://alice:s3/cret@127.0.0.1:1", want: "nats://alice:xxxxx@127.0.0.1:1"},
		{name: "password with a hash", url: "nats://alice:s3#cret@127.0.0.1:1", want: "nats://alice:xxxxx@127.0.0.1:1"},
		{name: "password with a question mark", url: "nats://alice:s3?cret@127.0.0.1:1", want: "nats://alice:xxxxx@127.0.0.1:1"},
		{name: "token with a slash", url: "nats://s3/cret@127.0.0.1:1", want: "nats://xxxxx@127.0.0.1:1"},
		// NATS_URL is a list split at every ',', one in a secret included.
		{name: "password with a comma", url: "nats://alice:s3,cret@127.0.0.1:1", want: "must be percent-encoded as %2C"},                // not `invalid port ":s3"`
		{name: "token with a comma", url: "nats://s3,cret@127.0.0.1:1", want: `"nats://xxxxx@127.0.0.1:1": not a comma-separated list`}, // not `lookup s3`
		{name: "password with an @", url: "nats://alice:s3@cret@127.0.0.1:1", want: "NATS at nats://alice:xxxxx@127.0.0.1:1"},
		{name: "password with a bad escape", url: "nats://alice:s3%cret@127.0.0.1:1", want: "must be percent-encoded"}, // not `invalid URL escape "%cr"`
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := natsjs.New(t.Context(), natsjs.Config{URL: tc.url, NoConnectRetry: true})
			if err == nil || strings.Contains(err.Error(), "s3") || strings.Contains(err.Error(), "cret") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error naming %q, without the secret", err, tc.want)
			}
		})
	}
	t.Run("check", func(t *testing.T) {
		t.Parallel()
		owner := newEmbedded(t)
		url := strings.Replace(owner.ClientURL(), "nats://", "nats://alice:s3cret@", 1)
		b, err := natsjs.New(t.Context(), natsjs.Config{URL: url}, natsjs.WithNATSOptions(nats.ReconnectWait(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		if err := owner.Close(); err != nil {
			t.Fatal(err)
		}
		pubsubtest.WaitFor(t, "Check to fail", func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			err := b.Check(ctx)
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("Check = %v, with the password", err)
			}
			return err != nil
		})
	})
}

// TestShutdownWhileBrokerDown: a subscriber whose broker is gone (the
// connection reconnecting) stops at once, not after waiting DrainTimeout
// for a drain and again for a flush that cannot happen; the broker's Close
// says that the connection was down.
func TestShutdownWhileBrokerDown(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t) // stands for an external server
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: owner.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	var c collector
	sub, err := pubsub.NewSubscriber(b, "down", "s", c.handle, pubsub.WithDelivery(pubsub.DeliveryConfig{DrainTimeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	stop := pubsubtest.Start(t, sub)
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the connection to drop", func() bool { return b.Conn().IsReconnecting() })
	// Broken, each step waits DrainTimeout (10s) or more: 5s leaves a
	// loaded machine room for "at once".
	start := time.Now()
	stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Subscriber.Run returned %v after its context was cancelled, want at once", took.Round(time.Millisecond))
	}
	start = time.Now()
	err = b.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v, want at once", took.Round(time.Millisecond))
	}
	if err == nil || !strings.Contains(err.Error(), "was down") {
		t.Errorf("Close = %v, want an error saying the connection was down", err)
	}
}

// TestAsyncErrorsLogged: the connection's asynchronous errors (here a slow
// consumer; a permissions violation or a drain timeout alike) go to the
// broker's logger, not to stderr as nats.go does by default.
func TestAsyncErrorsLogged(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	b, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir()}, natsjs.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	release := make(chan struct{})
	sub, err := b.Conn().Subscribe("slow", func(*nats.Msg) { <-release })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release) })
	if err := sub.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := b.Conn().Publish("slow", nil); err != nil {
			t.Fatal(err)
		}
	}
	pubsubtest.WaitFor(t, "the slow consumer error in the log", func() bool {
		return strings.Contains(logs.String(), `"msg":"natsjs: connection error","error":"nats: slow consumer, messages dropped","subject":"slow"`)
	})
}

// TestServerRestartedEmpty: a subscription whose server comes back without
// its storage (a new disk, a lost volume), so without the stream and the
// consumer, creates them again and consumes what is published after,
// instead of asking for messages of a consumer that no longer exists for
// as long as the process runs.
func TestServerRestartedEmpty(t *testing.T) {
	t.Parallel()
	first := newEmbedded(t) // stands for an external server
	addr := strings.TrimPrefix(first.ClientURL(), "nats://")
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: first.ClientURL()},
		natsjs.WithNATSOptions(nats.ReconnectWait(50*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	var c collector
	sub, err := pubsub.NewSubscriber(b, "amnesia", "s", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	second := restartEmpty(t, first, addr)
	pubsubtest.WaitFor(t, "the subscriber to reconnect", func() bool { return b.Check(t.Context()) == nil })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](second, "amnesia")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitAny(t, 20*time.Second, "the message published after the restart was not handled within 20s")
}

// TestPublishAfterServerRestartedEmpty: a publisher whose server comes back
// without its storage creates the topic's stream again before its next
// publish, which would otherwise fail with no stream to store it.
func TestPublishAfterServerRestartedEmpty(t *testing.T) {
	t.Parallel()
	first := newEmbedded(t) // stands for an external server
	addr := strings.TrimPrefix(first.ClientURL(), "nats://")
	var logs lockedBuffer
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: first.ClientURL()},
		natsjs.WithNATSOptions(nats.ReconnectWait(50*time.Millisecond)), natsjs.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "amnesia.pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	restartEmpty(t, first, addr)
	pubsubtest.WaitFor(t, "the publisher to reconnect", func() bool { return strings.Contains(logs.String(), "natsjs: reconnected") })
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil {
		t.Errorf("first Publish after the restart = %v, want nil", err)
	}
}

// TestPublishSetupLookupLost: a publish whose stream lookup gets no answer
// (nats-server answers none while a cluster elects the stream's leader)
// looks the stream up again after setupAttemptTimeout (2s) and succeeds,
// rather than waiting for the lost answer until PublishTimeout, which held
// every publish of a topic for 30s where the election took 5s (README,
// Running against a NATS cluster); and a publish waiting for that lookup
// gives up at its own, shorter, deadline.
func TestPublishSetupLookupLost(t *testing.T) {
	t.Parallel()
	owner := newEmbedded(t)
	proxy := newDroppingProxy(t, owner.ClientURL(), "$JS.API.STREAM.INFO.lost_info")
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: proxy.url, PublishTimeout: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "lost.info")
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}) }()
	pubsubtest.WaitFor(t, "the stream lookup, dropped", func() bool { return proxy.dropped.Load() })
	short, cancelShort := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancelShort()
	if err := pub.Publish(short, &pingv1.PingRequest{Number: 2}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a publish with 100ms to go behind the lost lookup = %v, want its deadline's error", err)
	}
	if err := <-first; err != nil {
		t.Errorf("the publish whose lookup was lost = %v, want nil: the lookup made again", err)
	}
}

// TestRedriveAfterStreamDeleted: re-driving a dead letter whose topic's
// stream was deleted since creates the stream again, instead of failing
// every time until the process restarts.
func TestRedriveAfterStreamDeleted(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	sub, err := pubsub.NewSubscriber(b, "redrive.gone", "s", func(context.Context, *pingv1.PingRequest) error {
		return pubsub.Permanent(errors.New("refused"))
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "redrive.gone")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the dead letter", func() bool { return deadLetterCount(t, b, "redrive.gone", "s") == 1 })
	stop()
	if err := b.JetStream().DeleteStream(t.Context(), "redrive_gone"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for dl, err := range b.DeadLetters(t.Context(), "redrive.gone", "s") {
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Redrive(t.Context(), dl); err != nil {
			t.Errorf("Redrive after the stream's deletion = %v, want nil", err)
		}
	}
	s, err := b.JetStream().Stream(t.Context(), "redrive_gone")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("the topic's stream holds %d messages after the re-drive, want 1", n)
	}
	checkCreatedAfterHealDelay(t, b, "redrive_gone", deleted)
}

// TestStartWithoutJetStreamPermissions: a user the server does not allow
// JetStream's API fails New with an error naming the permissions
// violation, not only the timeout of the request the server dropped.
func TestStartWithoutJetStreamPermissions(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{
		Users: []*server.User{{Username: "limited", Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"foo"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}}},
	})
	url := strings.Replace(srv.ClientURL(), "nats://", "nats://limited:pw@", 1)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // for the rejection to arrive, on a loaded machine too
	defer cancel()
	_, err := natsjs.New(ctx, natsjs.Config{URL: url})
	if err == nil || !strings.Contains(err.Error(), `Permissions Violation for Publish to "$JS.API.INFO"`) {
		t.Errorf("New = %v, want an error naming the permissions violation", err)
	}
}

// TestPublishSetupDeniedNotRetried: a user whose permissions leave out a
// stream's lookup (a service given the streams of its own topics only)
// publishing to another topic: nats-server drops the request and tells
// the connection so, and the publish fails naming the violation once the
// attempt's 2s are out, rather than the lookup being made again every 2s
// until NATS_PUBLISH_TIMEOUT as if a cluster were electing the stream's
// leader, each time refused and logged again, to fail with nothing but
// "context deadline exceeded".
func TestPublishSetupDeniedNotRetried(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{
		Users: []*server.User{{Username: "orders", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.INFO.payments"}},
		}}},
	})
	url := strings.Replace(srv.ClientURL(), "nats://", "nats://orders:pw@", 1)
	b, logs := newClusterBroker(t, url, natsjs.Config{PublishTimeout: 15 * time.Second})
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "payments")
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1})
	if err == nil || !strings.Contains(err.Error(), `Permissions Violation for Publish to "$JS.API.STREAM.INFO.payments"`) {
		t.Errorf("a publish whose stream lookup is denied = %v, want an error naming the permissions violation", err)
	}
	if n := strings.Count(logs.String(), "Permissions Violation"); n != 1 {
		t.Errorf("the lookup was refused %d times, want once (made again as if lost):\n%s", n, logs.String())
	}
}

// TestNATSHandlersOfTheUserChained: connection handlers given with
// WithNATSOptions (to count reconnects, say) run besides the broker's own,
// which a publish after a reconnect and Close rely on, instead of replacing
// them.
func TestNATSHandlersOfTheUserChained(t *testing.T) {
	t.Parallel()
	first := newEmbedded(t) // stands for an external server
	addr := strings.TrimPrefix(first.ClientURL(), "nats://")
	var reconnects, closes atomic.Int32
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: first.ClientURL()}, natsjs.WithNATSOptions(
		nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnects.Add(1) }),
		nats.ClosedHandler(func(*nats.Conn) { closes.Add(1) }),
	))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "handlers")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	restartEmpty(t, first, addr)
	pubsubtest.WaitFor(t, "the user's reconnect handler", func() bool { return reconnects.Load() == 1 })
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil {
		t.Errorf("first Publish after the restart = %v, want nil", err)
	}
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	// Broken (the broker's closed handler replaced), Close waits 15s.
	if took := time.Since(start); took > 5*time.Second || closes.Load() != 1 {
		t.Errorf("Close took %v and ran the user's closed handler %d times, want at once and once", took.Round(time.Millisecond), closes.Load())
	}
}

// TestCloseWithNoCallbacksAfterClientClose: with that option nats.go runs
// no closed handler after Close, and Close still returns once the
// connection is drained, not after its 15s bound.
func TestCloseWithNoCallbacksAfterClientClose(t *testing.T) {
	t.Parallel()
	srv := newEmbedded(t)
	var closes atomic.Int32
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: srv.ClientURL()}, natsjs.WithNATSOptions(
		nats.NoCallbacksAfterClientClose(),
		nats.ClosedHandler(func(*nats.Conn) { closes.Add(1) }),
	))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "nocallbacks")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if took := time.Since(start); took > 5*time.Second || closes.Load() != 0 {
		t.Errorf("Close took %v and ran the closed handler %d times, want at once and never", took.Round(time.Millisecond), closes.Load())
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
}

// restartEmpty closes first, an embedded server standing for an external
// one, and starts another at its address addr with no storage: a server
// restarted on an empty disk.
func restartEmpty(t *testing.T, first *natsjs.Broker, addr string) *natsjs.Broker {
	t.Helper()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	return second
}
