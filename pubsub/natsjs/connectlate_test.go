package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// freePort returns a loopback port where nothing listens (one the system
// just gave out and took back).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// newUnconnected returns a broker started with NATS_URL at port, where no
// server listens yet, retrying every 50ms, and its log.
func newUnconnected(t *testing.T, url string, cfg natsjs.Config) (*natsjs.Broker, *lockedBuffer) {
	t.Helper()
	var logs lockedBuffer
	cfg.URL = url
	b, err := natsjs.New(t.Context(), cfg,
		natsjs.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		natsjs.WithNATSOptions(nats.ReconnectWait(50*time.Millisecond)))
	if err != nil {
		t.Fatalf("New with no server at %s = %v, want a broker connecting in the background", url, err)
	}
	return b, &logs
}

// run runs sub until the test ends, without waiting for it to consume as
// pubsubtest.Start does.
func run(t *testing.T, sub *pubsub.Subscriber) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Subscriber.Run = %v", err)
		}
	})
}

// TestStartWhileNATSUnreachable: New with no server of NATS_URL answering
// returns a broker, logs a warning naming the URL (its password hidden)
// and the cause, and fails Check, as does a subscriber's, until a server
// answers; then it logs "natsjs: connected", the subscriber, which waited
// for the connection without failing, consumes, and the messages published
// before the server came (held, as during a lost connection) and after are
// all delivered.
func TestStartWhileNATSUnreachable(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	b, logs := newUnconnected(t, "nats://app:s3cret@127.0.0.1:"+strconv.Itoa(port), natsjs.Config{})
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "not connected to NATS at nats://app:xxxxx@127.0.0.1:"+strconv.Itoa(port)+" yet") {
		t.Errorf("Check before any server = %v, want an error saying it is not connected yet", err)
	}
	warning := logs.String()
	if !strings.Contains(warning, "level=WARN") || !strings.Contains(warning, "app:xxxxx@127.0.0.1:"+strconv.Itoa(port)) ||
		!strings.Contains(warning, "no servers available") || strings.Contains(warning, "s3cret") {
		t.Errorf("log = %q, want a warning naming the URL without its password, and the cause", warning)
	}

	var c collector
	sub, err := pubsub.NewSubscriber(b, "late", "s", c.handle, pubsub.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	run(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "late")
	if err != nil {
		t.Fatal(err)
	}
	before := make(chan error, 1)
	go func() { before <- pub.Publish(context.WithoutCancel(t.Context()), &pingv1.PingRequest{Number: 1}) }()
	pubsubtest.WaitFor(t, "Run to subscribe", func() bool {
		err := sub.Check(t.Context())
		return err != nil && !strings.Contains(err.Error(), "not started")
	})
	if err := sub.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "not consuming: subscribing: natsjs: not connected to NATS at") {
		t.Errorf("subscriber's Check before any server = %v, want an error saying why it is not consuming", err)
	}

	// Longer than a JetStream request waits (5s) unless the subscriber
	// waits for the connection rather than trying to subscribe: it then
	// fails, logs it and tries again after a back-off, which grows up to
	// 30s (after a longer outage it would consume that much late).
	time.Sleep(5500 * time.Millisecond)
	natsjs.StartTestServer(t, &server.Options{Port: port, Users: []*server.User{{Username: "app", Password: "s3cret"}}})
	pubsubtest.WaitFor(t, "the broker's Check to pass", func() bool { return b.Check(t.Context()) == nil })
	pubsubtest.WaitFor(t, "the subscriber's Check to pass", func() bool { return sub.Check(t.Context()) == nil })
	if err := <-before; err != nil {
		t.Errorf("Publish made before the server came = %v, want it held and acknowledged", err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 2}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "both messages", func() bool { return c.len() == 2 })
	if got := logs.String(); !strings.Contains(got, `msg="natsjs: connected" url=nats://app:xxxxx@127.0.0.1:`) || strings.Contains(got, "failed to subscribe") {
		t.Errorf("log = %q, want natsjs: connected and no failure to subscribe", got)
	}
}

// TestPublishWhileNeverConnected: a publish made before the first
// connection fails with Unavailable after NATS_PUBLISH_TIMEOUT, as during
// a lost connection, and says that the message was not sent
// (pubsub.ErrNotSent): it waited on its stream's lookup.
func TestPublishWhileNeverConnected(t *testing.T) {
	t.Parallel()
	b, _ := newUnconnected(t, "nats://127.0.0.1:"+strconv.Itoa(freePort(t)), natsjs.Config{PublishTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = b.Close() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "never")
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1})
	if connect.CodeOf(err) != connect.CodeUnavailable || !errors.Is(err, pubsub.ErrNotSent) || !strings.Contains(err.Error(), "not sent") {
		t.Errorf("Publish while never connected = %v, want Unavailable: pubsub: message not sent: …", err)
	}
}

// TestClosedWhilePublishLooksUpItsStream: a publish waiting on its stream's
// lookup before the first connection fails with pubsub.ErrClosed when the
// broker is closed, as one made after Close does, not with Unavailable.
func TestClosedWhilePublishLooksUpItsStream(t *testing.T) {
	t.Parallel()
	b, _ := newUnconnected(t, "nats://127.0.0.1:"+strconv.Itoa(freePort(t)), natsjs.Config{PublishTimeout: time.Hour})
	t.Cleanup(func() { _ = b.Close() })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "never")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}) }()
	pubsubtest.WaitFor(t, "the publish to look up its stream", func() bool { return natsjs.LookingUpStream(b, "never") })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, pubsub.ErrClosed) || !errors.Is(err, pubsub.ErrNotSent) {
		t.Errorf("Publish whose broker closed during its stream's lookup = %v, want pubsub.ErrClosed, not sent", err)
	}
}

// TestShutdownWhileNeverConnected: a subscriber waiting for the first
// connection stops when its context is cancelled, though its DrainTimeout
// is an hour, and Close returns nil: nothing was held that a caller was
// not told of.
func TestShutdownWhileNeverConnected(t *testing.T) {
	t.Parallel()
	b, _ := newUnconnected(t, "nats://127.0.0.1:"+strconv.Itoa(freePort(t)), natsjs.Config{})
	var c collector
	sub, err := pubsub.NewSubscriber(b, "never", "s", c.handle, pubsub.WithDelivery(pubsub.DeliveryConfig{DrainTimeout: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Subscriber.Run = %v, want nil", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close while never connected = %v, want nil", err)
	}
	if _, err := b.Subscribe(t.Context(), pubsub.ConsumerConfig{Topic: "never", Subscription: "s"}, func(pubsub.Delivery) {}); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
}

// TestStartFailsFastWhenTold: with NoConnectRetry, New fails at once when
// no server answers, naming the URL.
func TestStartFailsFastWhenTold(t *testing.T) {
	t.Parallel()
	url := "nats://127.0.0.1:" + strconv.Itoa(freePort(t))
	_, err := natsjs.New(t.Context(), natsjs.Config{URL: url, NoConnectRetry: true})
	if err == nil || !strings.Contains(err.Error(), "NATS at "+url) {
		t.Errorf("New(unreachable URL, NoConnectRetry) = %v, want an error naming the URL", err)
	}
}

// TestStartAuthFailureFailsAtOnce: a server that answers and refuses the
// credentials fails New, retry or not.
func TestStartAuthFailureFailsAtOnce(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{Users: []*server.User{{Username: "app", Password: "right"}}})
	url := strings.Replace(srv.ClientURL(), "nats://", "nats://app:wrong@", 1)
	_, err := natsjs.New(t.Context(), natsjs.Config{URL: url})
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("New with a wrong password = %v, want an authorization violation, without the password", err)
	}
}

// TestStartWithoutJetStreamFailsAtOnce: a server that answers without
// JetStream fails New, retry or not.
func TestStartWithoutJetStreamFailsAtOnce(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartPlainTestServer(t, &server.Options{})
	_, err := natsjs.New(t.Context(), natsjs.Config{URL: srv.ClientURL()})
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("New against a server without JetStream = %v, want an error naming JetStream", err)
	}
}

// TestAuthFailureAfterStartClosesTheBroker: a server that comes after New
// and refuses the credentials makes nats.go give up (the same error
// twice): the broker logs why and closes, and its subscribers' Run fails
// with pubsub.ErrClosed, which stops a kit.Server, as a fatal error at
// start would have.
func TestAuthFailureAfterStartClosesTheBroker(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	b, logs := newUnconnected(t, "nats://app:wrong@127.0.0.1:"+strconv.Itoa(port), natsjs.Config{})
	t.Cleanup(func() { _ = b.Close() })
	var c collector
	sub, err := pubsub.NewSubscriber(b, "refused", "s", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(context.Background()) }()
	natsjs.StartTestServer(t, &server.Options{Port: port, Users: []*server.User{{Username: "app", Password: "right"}}})
	if err := <-done; !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Subscriber.Run = %v, want ErrClosed", err)
	}
	if got := logs.String(); !strings.Contains(got, `msg="natsjs: gave up connecting; the broker is closed"`) ||
		!strings.Contains(got, "Authorization Violation") || strings.Contains(got, "wrong") {
		t.Errorf("log = %q, want the authorization violation, without the password", got)
	}
	// Readiness says why too, for a service with no subscriber to stop it.
	if err := b.Check(t.Context()); !errors.Is(err, pubsub.ErrClosed) || !strings.Contains(err.Error(), "gave up connecting to NATS at") ||
		!strings.Contains(err.Error(), "Authorization Violation") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Check = %v, want ErrClosed with the authorization violation, without the password", err)
	}
}

// TestConnectedLateWithoutJetStream: a server that comes after New without
// JetStream is logged at error, and Check keeps failing, as New would have
// failed had it answered at once.
func TestConnectedLateWithoutJetStream(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	b, logs := newUnconnected(t, "nats://127.0.0.1:"+strconv.Itoa(port), natsjs.Config{})
	t.Cleanup(func() { _ = b.Close() })
	natsjs.StartPlainTestServer(t, &server.Options{Port: port})
	pubsubtest.WaitFor(t, "the error log", func() bool {
		return strings.Contains(logs.String(), `level=ERROR msg="natsjs: connected, but JetStream is not usable"`)
	})
	if err := b.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("Check = %v, want an error naming JetStream", err)
	}
}

// TestRefusedAfterStartIsLogged: a server that comes after New and refuses
// the connection for a reason other than the credentials (here, its TLS
// certificate, of an authority the broker does not know), which nats.go retries
// forever, is logged at error with the cause, once, and Check says it, as
// New would have failed with it had the server answered at once.
func TestRefusedAfterStartIsLogged(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	b, logs := newUnconnected(t, "nats://127.0.0.1:"+strconv.Itoa(port), natsjs.Config{})
	t.Cleanup(func() { _ = b.Close() })
	natsjs.StartTestServer(t, newTLSCluster(t, t.TempDir()).options(port, ""))
	pubsubtest.WaitFor(t, "Check to say why", func() bool {
		err := b.Check(t.Context())
		return err != nil && strings.Contains(err.Error(), "certificate signed by unknown authority")
	})
	time.Sleep(200 * time.Millisecond) // a few more attempts, every 50ms
	got := logs.String()
	if n := strings.Count(got, `level=ERROR msg="natsjs: a server of NATS_URL refuses the connection; still trying"`); n != 1 ||
		!strings.Contains(got, "certificate signed by unknown authority") {
		t.Errorf("log = %q, want the refusal logged at error once, with its cause", got)
	}
}

// listen accepts TCP connections on a loopback port until the test ends,
// passes each to handle, and sends it on accepted (up to 100), to be
// closed when the test ends. It returns the listener's address.
func listen(t *testing.T, handle func(net.Conn)) (addr string, accepted chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = make(chan net.Conn, 100)
	t.Cleanup(func() {
		_ = ln.Close()
		for len(accepted) > 0 {
			_ = (<-accepted).Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
			handle(c)
		}
	}()
	return ln.Addr().String(), accepted
}

// TestStartTriesEachServerOnce: New, finding no server answering, tries
// each server of NATS_URL once before it returns, not twice: each attempt
// at a server that accepts connections and says nothing (a hung process, a
// proxy with no backend) takes nats.go's connect timeout (2s), and a walk
// of the list again doubled the start's delay.
func TestStartTriesEachServerOnce(t *testing.T) {
	t.Parallel()
	addr, accepted := listen(t, func(net.Conn) {}) // held open, silent
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: "nats://" + addr},
		natsjs.WithNATSOptions(nats.Timeout(100*time.Millisecond), nats.ReconnectWait(time.Hour)))
	if err != nil {
		t.Fatalf("New with a silent server = %v, want a broker connecting in the background", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if n := len(accepted); n != 1 {
		t.Errorf("connections New made to the only server = %d, want 1", n)
	}
}

// TestStartBoundedByItsContext: New's context bounds its wait for the
// first walk of the servers, which it read only from nats.go's callbacks:
// with a server that says nothing for longer than New's context lasts, New
// fails with the context's error instead of waiting on.
func TestStartBoundedByItsContext(t *testing.T) {
	t.Parallel()
	addr, _ := listen(t, func(net.Conn) {}) // held open, silent
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	b, err := natsjs.New(ctx, natsjs.Config{URL: "nats://" + addr},
		natsjs.WithNATSOptions(nats.Timeout(500*time.Millisecond), nats.ReconnectWait(time.Hour)))
	if err == nil {
		_ = b.Close()
		t.Fatal("New outlived its context")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("New = %v, want the context's deadline", err)
	}
}

// TestStartTLSFirstWhileUnreachable: with nats.TLSHandshakeFirst (for a
// server with handshake_first), a server that says nothing, or a proxy
// with no backend that closes the connection at once, fails the TLS
// handshake: no server answered, and New returns a broker connecting in
// the background, as it does without TLS, rather than failing the start.
func TestStartTLSFirstWhileUnreachable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		handle func(net.Conn)
	}{
		{name: "silent", handle: func(net.Conn) {}},
		{name: "closed at once", handle: func(c net.Conn) { _ = c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, _ := listen(t, tc.handle)
			b, err := natsjs.New(t.Context(), natsjs.Config{URL: "tls://" + addr},
				natsjs.WithNATSOptions(nats.TLSHandshakeFirst(), nats.Timeout(100*time.Millisecond), nats.ReconnectWait(time.Hour)))
			if err != nil {
				t.Fatalf("New = %v, want a broker connecting in the background", err)
			}
			t.Cleanup(func() { _ = b.Close() })
		})
	}
}

// TestStartConnectedLogsTheURL: a broker that connects to NATS_URL at once
// logs where, its password hidden, as one that connects in the background
// does: a service on a shared cluster logged nothing of its broker at
// start, where one on the embedded server logs "embedded NATS server
// ready", so a fleet's logs could not tell which broker each service used.
func TestStartConnectedLogsTheURL(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	natsjs.StartTestServer(t, &server.Options{Port: port, Users: []*server.User{{Username: "app", Password: "s3cret"}}})
	var logs lockedBuffer
	b, err := natsjs.New(t.Context(), natsjs.Config{URL: "nats://app:s3cret@127.0.0.1:" + strconv.Itoa(port)},
		natsjs.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	want := `level=INFO msg="natsjs: connected" url=nats://app:xxxxx@127.0.0.1:` + strconv.Itoa(port)
	if got := logs.String(); !strings.Contains(got, want) || strings.Contains(got, "s3cret") {
		t.Errorf("log = %q, want a line %s and no password", got, want)
	}
}
