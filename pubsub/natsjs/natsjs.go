// Package natsjs is the NATS JetStream [pubsub.Broker], on
// [github.com/nats-io/nats.go/jetstream]. With no URL configured it starts an
// embedded [nats-server] with JetStream file storage, so a service needs
// nothing external; with [Config.URL] it connects to a NATS cluster instead.
//
// Each topic is a stream (named after the topic, dots turned to
// underscores) holding the topic's subject and the subjects of re-driven
// messages; each subscription is a durable pull consumer of that stream
// (all of it: re-drives for other subscriptions are acknowledged unseen),
// shared by every instance that consumes it; a replaying subscription
// ([pubsub.WithReplay]) is an ephemeral consumer of each instance's own,
// deleted when it stops or, after [Config.ReplayInactiveThreshold], when
// its process is gone. Dead letters go to one stream,
// [Config.DeadLetterStream], under "_pubsub.dead.<subscription>.<topic>".
// Streams and consumers are created or updated idempotently when first used;
// a stream's limits (Config.MaxAge, DuplicateWindow, Replicas) are set by
// publishes only, so a subscriber leaves those of an existing stream as its
// producer set them; the dead-letter stream, which services share, keeps
// those of the broker that created it.
//
// Start with [New], given [ConfigFromEnv]'s Config (NATS_* variables; the
// zero Config runs the embedded server in ./data/nats), and hand the broker to
// pubsub.NewPublisher and pubsub.NewSubscriber; close it after they have
// stopped. The README's section "Configuration (NATS)" lists the settings:
// https://github.com/connectkit/connectkit#configuration-nats
//
// It is the only package of connectkit that imports nats.go and
// nats-server.
//
// [nats-server]: https://pkg.go.dev/github.com/nats-io/nats-server/v2/server
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Option configures a [Broker] with a code dependency.
type Option interface {
	apply(*options)
}

type options struct {
	logger   *slog.Logger
	natsOpts []nats.Option
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger of the broker and of the embedded server.
// Default: [slog.Default], read by [New], so that its warnings (a lost
// connection, a misspelt NATS_* variable) are seen even where no logger
// was given; kit users pass srv.Logger(). The embedded server's notices while
// it starts and shuts down are debug lines; [New] logs one info line
// instead ("natsjs: embedded NATS server ready": its store directory,
// whether it listens, JetStream's limits).
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = logger })
}

// WithNATSOptions adds options to the NATS connection (TLS, authentication,
// reconnect policy, ...), applied after the broker's own. The handlers they
// set (nats.ReconnectHandler, ClosedHandler, DisconnectErrHandler,
// ErrorHandler) run besides the broker's, which they do not replace;
// [Broker.Close] returns once the closed handler has run.
func WithNATSOptions(opts ...nats.Option) Option {
	return optionFunc(func(o *options) { o.natsOpts = append(o.natsOpts, opts...) })
}

// Broker is a [pubsub.Broker] on NATS JetStream. It is safe for concurrent
// use. Close it after everything that uses it has stopped: it drains the
// connection, then shuts the embedded server down.
type Broker struct {
	cfg    Config
	logger *slog.Logger
	// replicasSet is whether Config.Replicas was set: the default leaves
	// an existing stream's replicas as they are.
	replicasSet bool
	server      *server.Server // the embedded server; nil with Config.URL
	// serverLog logs the embedded server's messages; its notices while the
	// server starts and stops are debug.
	serverLog *serverLogger
	unlock    func() // releases the embedded server's data directory
	nc        *nats.Conn
	js        jetstream.JetStream // what JetStream returns; everything but Publish uses it
	acks      acks                // Publish's
	closed    chan struct{}       // closed when the connection is
	// noCallbacks is nats.NoCallbacksAfterClientClose, set by the user: then
	// Close, not the closed handler, closes closed.
	noCallbacks bool
	closeOnce   sync.Once

	window  chan struct{} // one token per publish awaiting its ack
	streams sync.Map      // topic → *streamState
	dlOnce  onceErr       // the dead-letter stream exists
	// dlNotBefore is when the dead-letter stream, lost, may be created
	// again (Unix nanoseconds; see streamLost).
	dlNotBefore atomic.Int64
	denied      atomic.Pointer[error] // the last permissions violation
	// connected is closed once the connection is first made: at once, or
	// in the background after New found no server of Config.URL answering
	// (see Config.NoConnectRetry); notConnected holds why it is not yet,
	// the error of the last attempt, nil if New connected.
	connected     chan struct{}
	connectedOnce sync.Once
	notConnected  atomic.Pointer[error]
	// firstErr receives the error of New's walk of the servers, once,
	// when it failed with nats.RetryOnFailedConnect (see firstAttempt).
	firstErr     chan error
	firstErrOnce sync.Once
	// refusal is the last refusal of a server before the first
	// connection that was logged; only nats.go's callback goroutine
	// uses it.
	refusal string
	// consumers holds the subscriptions' consumers running (*consumer),
	// which look themselves up after a reconnect.
	consumers sync.Map
}

var _ pubsub.Broker = (*Broker)(nil)

// New starts the embedded server (when cfg.URL is empty) and connects to it
// or to cfg.URL. When no server of cfg.URL answers (connection refused, a
// timeout, a name that does not resolve), it logs a warning and returns a
// broker that connects in the background, unless cfg.NoConnectRetry is
// set: until it connects, Check fails, Subscribe waits for the connection,
// and publishes wait as they do while a connection is lost (see
// [Broker.Publish]). A server that answers and refuses (authentication,
// TLS, no JetStream, missing permissions) fails New. ctx bounds the
// start: New fails with its error if it ends before the first try of the
// servers does.
func New(ctx context.Context, cfg Config, opts ...Option) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if cfg.fromEnv {
		for _, m := range misspeltEnv(os.Environ()) {
			o.logger.Warn("natsjs: unknown NATS_ variable ignored", "variable", m[0], "did_you_mean", m[1])
		}
	}
	b := &Broker{
		cfg:         cfg.withDefaults(),
		replicasSet: cfg.Replicas != 0,
		logger:      o.logger,
		closed:      make(chan struct{}),
		connected:   make(chan struct{}),
		firstErr:    make(chan error, 1),
	}
	b.window = make(chan struct{}, b.cfg.PublishWindow)
	b.acks.settle = func(c *confirmation, err error) {
		if err != nil {
			err = b.publishError(c.topic, err)
		}
		c.settle(err)
	}
	natsOpts := []nats.Option{
		nats.Name(b.cfg.Name),
		nats.MaxReconnects(-1),
		nats.DrainTimeout(10 * time.Second),
		nats.FlusherTimeout(writeTimeout),
	}
	url := b.cfg.URL
	if url == "" {
		b.serverLog = &serverLogger{logger: b.logger}
		srv, unlock, err := startServer(b.cfg, b.serverLog)
		if err != nil {
			return nil, err
		}
		b.server, b.unlock = srv, unlock
		listen := "in-process only"
		if b.cfg.Listen == "" {
			natsOpts = append(natsOpts, nats.InProcessServer(srv))
		} else {
			url = b.ClientURL() // not 0.0.0.0 or [::], which Windows does not dial
			listen = url
		}
		js := srv.JetStreamConfig()
		b.logger.Info("natsjs: embedded NATS server ready", "store", js.StoreDir, "listen", listen,
			"max_memory_bytes", js.MaxMemory, "max_storage_bytes", js.MaxStore)
	} else {
		natsOpts = append(natsOpts, b.cfg.clusterOptions()...)
	}
	retry := b.cfg.URL != "" && !b.cfg.NoConnectRetry
	if retry {
		// One walk of the servers either way: its error, which nats.go
		// then hands to the reconnect error handler, says whether to go
		// on in the background (see firstAttempt).
		natsOpts = append(natsOpts, nats.RetryOnFailedConnect(true))
	}
	natsOpts = append(natsOpts, o.natsOpts...)
	natsOpts = append(natsOpts, b.handlers) // last, to run those of WithNATSOptions too
	nc, err := nats.Connect(url, natsOpts...)
	background := false
	switch {
	case err != nil:
	case retry:
		if background, err = b.firstAttempt(ctx); err != nil {
			b.acks.close() // not "gave up connecting": New fails with why
			nc.Close()
		}
	default: // nats.RetryOnFailedConnect of WithNATSOptions
		background = nc.Status() != nats.CONNECTED
	}
	if err != nil {
		b.stopServer()
		if urlErr := (*neturl.Error)(nil); errors.As(err, &urlErr) { // a URL that does not parse, with its secrets
			urlErr.URL = redactURLs(urlErr.URL)
		}
		return nil, fmt.Errorf("natsjs: failed to connect to %s: %w", b.describe(), err)
	}
	b.nc = nc
	b.acks.mu.Lock() // the disconnected handler may run already
	b.acks.nc = nc
	b.acks.mu.Unlock()
	b.js, err = jetstream.New(nc)
	if err != nil {
		b.acks.close() // its handlers may run after New returned
		nc.Close()
		b.stopServer()
		return nil, fmt.Errorf("natsjs: failed to open JetStream: %w", err)
	}
	// Ends with Close. At least 1ms apart: a PublishTimeout under 4ns would
	// make a ticker of 0 (a panic), one under 4ms a busy one.
	go b.acks.sweepEvery(max(b.cfg.PublishTimeout/sweepsBeforeTimeout, time.Millisecond), b.closed)
	if background {
		return b, nil
	}
	b.markConnected()
	if err := b.Check(ctx); err != nil {
		_ = b.Close()
		if denied := b.denied.Load(); denied != nil { // why JetStream did not answer
			err = fmt.Errorf("%w (%w)", err, *denied)
		}
		return nil, err
	}
	if b.cfg.URL != "" {
		// Where it connected, as a connection made in the background says
		// (connectedLate): otherwise a service on a cluster logs nothing of
		// its broker at start, where one on the embedded server says so.
		b.logger.Info("natsjs: connected", "url", redactURLs(nc.ConnectedUrl()))
	}

	if err := b.notClusteredError(nc); err != nil {
		_ = b.Close()
		return nil, err
	}
	b.warnSingleReplica(nc)
	return b, nil
}

// Conn returns the broker's NATS connection, for what package pubsub does
// not cover (key-value buckets, requests).
func (b *Broker) Conn() *nats.Conn { return b.nc }

// JetStream returns a JetStream context on the broker's connection, for
// what package pubsub does not cover (streams, key-value buckets, a
// producer of its own). Publish uses another, so that publishes made
// through this one neither take nor free room in
// Config.PublishWindow.
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

// System implements [pubsub.Broker]: "nats".
func (b *Broker) System() string { return "nats" }

// Check implements [pubsub.Broker]: the connection is up and JetStream
// answers.
func (b *Broker) Check(ctx context.Context) error {
	if b.nc.IsClosed() {
		if why := b.notConnected.Load(); why != nil && !b.isConnected() && !b.acks.isClosing() { // see ClosedCB
			return fmt.Errorf("%w: gave up connecting to %s: %w", pubsub.ErrClosed, b.describe(), *why)
		}
		return pubsub.ErrClosed
	}
	if status := b.nc.Status(); status != nats.CONNECTED {
		if why := b.notConnected.Load(); why != nil && !b.isConnected() {
			return fmt.Errorf("natsjs: not connected to %s yet: %w", b.describe(), *why)
		}
		return fmt.Errorf("natsjs: connection to %s is %s", b.describe(), status)
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("natsjs: JetStream of %s does not answer: %w", b.describe(), err)
	}
	return nil
}

// errIfClosed is pubsub.ErrClosed once the connection is closed (only Close
// closes it: the broker reconnects forever), so that every operation of a
// closed broker fails with it, as pubsub promises.
func (b *Broker) errIfClosed() error {
	if b.nc.IsClosed() {
		return pubsub.ErrClosed
	}
	return nil
}

// down returns an error naming the connection's state while it is lost (and
// nats.go tries to reconnect), nil otherwise.
func (b *Broker) down() error {
	switch status := b.nc.Status(); status {
	case nats.DISCONNECTED, nats.RECONNECTING, nats.CONNECTING:
		return fmt.Errorf("natsjs: connection to %s is %s", b.describe(), status)
	}
	return nil
}

// Close refuses new publishes (pubsub.ErrClosed), waits up to 5 seconds for the
// acknowledgements of the publishes in flight, drains the connection (so that
// every acknowledgement of a message reaches the server), then shuts the
// embedded server down, last. It is idempotent. While the connection is down it
// closes it at once and returns an error saying so: the verdicts it held are
// lost (their messages come again after AckWait), and the publishes not yet
// confirmed fail. Before the connection was ever made it closes it at once and
// returns nil: it held no verdict, and the publishes waiting for it fail.
func (b *Broker) Close() error {
	var err error
	b.acks.close()
	if !b.nc.IsClosed() {
		b.awaitAcks(closeAckWait)
		if err = b.nc.Drain(); err != nil {
			b.nc.Close()
		}
		b.waitClosed(15 * time.Second)
	}
	b.stopServer()
	switch {
	case errors.Is(err, nats.ErrConnectionClosed):
		err = nil
	case errors.Is(err, nats.ErrConnectionReconnecting) && !b.isConnected():
		err = nil // never connected: nothing was lost that a caller was not told of
	case errors.Is(err, nats.ErrConnectionReconnecting): // nats.go closed it at once
		err = fmt.Errorf("natsjs: the connection to %s was down: closed it without sending what it held (verdicts, publishes not confirmed): %w", b.describe(), err)
	}
	return err
}

// writeTimeout bounds a write to the server (nats.FlusherTimeout, a
// minute by default): a server that stops reading without closing the
// connection fills the socket's buffers, and the write then blocked
// Publish whatever its context, the status that Check reads and Close,
// all waiting for the connection's lock, for that long. Past it the
// connection is taken for lost and nats.go reconnects. nats-server gives
// its own writes to clients 10s too (write_deadline).
const writeTimeout = 10 * time.Second

// closeAckWait bounds how long Close waits for the acknowledgements of the
// publishes in flight. Close's doc comment states it.
const closeAckWait = 5 * time.Second

// awaitAcks waits until no publish awaits its acknowledgement, the
// connection is down (which fails them), or timeout has passed: draining
// the connection unsubscribes the replies, and a publish whose
// acknowledgement came after would fail though stored.
func (b *Broker) awaitAcks(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for b.acks.waiting() > 0 && b.down() == nil && !b.nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// waitClosed waits until the drained connection is closed, or closes it
// past timeout. With nats.NoCallbacksAfterClientClose no handler says when
// it is: it looks every 10ms, and closes b.closed itself.
func (b *Broker) waitClosed(timeout time.Duration) {
	deadline := time.After(timeout)
	if !b.noCallbacks {
		select {
		case <-b.closed:
		case <-deadline:
			b.nc.Close()
		}
		return
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !b.nc.IsClosed() {
		select {
		case <-tick.C:
		case <-deadline:
			b.nc.Close()
		}
	}
	b.closeOnce.Do(func() { close(b.closed) })
}

// onceErr runs a function until it succeeds once. A call that finds another
// running it waits for that one, but no longer than its own context: a
// JetStream request lost with a server waits for its whole deadline.
type onceErr struct {
	// state is the number of resets times 2, plus 1 once the function
	// succeeded since the last: a run that a reset overtook (a reconnect
	// while it checked a stream) then does not count as done.
	state atomic.Uint64
	mu    sync.Mutex    // guards the creation of sem
	sem   chan struct{} // held by the call running the function
}

func (o *onceErr) do(ctx context.Context, f func() error) error {
	if o.isDone() {
		return nil
	}
	o.mu.Lock()
	if o.sem == nil {
		o.sem = make(chan struct{}, 1)
	}
	sem := o.sem
	o.mu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("natsjs: gave up waiting for the stream's setup: %w", ctx.Err())
	}
	defer func() { <-sem }()
	start := o.state.Load()
	if start&1 == 1 {
		return nil
	}
	if err := f(); err != nil {
		return err
	}
	o.state.CompareAndSwap(start, start|1) // fails if reset meanwhile
	return nil
}

// isDone reports whether the function succeeded since the last reset.
func (o *onceErr) isDone() bool { return o.state.Load()&1 == 1 }

// reset makes the next do run its function again, as when what it set up
// was deleted.
func (o *onceErr) reset() {
	for {
		old := o.state.Load()
		if o.state.CompareAndSwap(old, (old+2)&^1) {
			return
		}
	}
}
