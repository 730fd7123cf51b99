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
	"io"
	"log/slog"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
// Default: none (a discarding logger). The embedded server's notices while
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
	server *server.Server // the embedded server; nil with Config.URL
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
		o.logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		cfg:       cfg.withDefaults(),
		logger:    o.logger,
		closed:    make(chan struct{}),
		connected: make(chan struct{}),
		firstErr:  make(chan error, 1),
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
	return b, nil
}

// firstAttempt waits for the outcome of New's walk of the servers, made
// with nats.RetryOnFailedConnect: the connected handler's call, or the
// reconnect error handler's with the walk's error. It returns that error
// if a server answered and refused; background true if none answered,
// after logging that the broker connects in the background. It reads no
// state of the connection: that would wait for the lock that nats.go's
// reconnect attempt holds, up to a connect timeout (2s) at a server that
// says nothing. ctx, New's, bounds the wait.
func (b *Broker) firstAttempt(ctx context.Context) (background bool, err error) {
	// nats.Connect made the walk's first try before returning, without
	// ctx: a ctx that ended meanwhile must win, where the select below
	// would pick at random between it and the walk's outcome.
	if ctx.Err() != nil {
		return false, fmt.Errorf("natsjs: connecting to %s: %w", b.describe(), context.Cause(ctx))
	}
	select {
	case err = <-b.firstErr:
	case <-b.connected:
		return false, nil
	case <-ctx.Done(): // New's context bounds the wait, should nats.go ever not call back
		return false, fmt.Errorf("natsjs: connecting to %s: %w", b.describe(), context.Cause(ctx))
	}
	if !unreachable(err) {
		return false, err
	}
	b.logger.Warn("natsjs: no server of NATS_URL answers; serving unready and connecting in the background",
		"url", redactURLs(b.cfg.URL), "err", err)
	return true, nil
}

// unreachable reports whether err, of a first connection, says that no
// server answered (each refused the connection, or timed out, or its name
// did not resolve, or a proxy in front of it closed the connection at
// once), rather than that one answered and refused (authentication, TLS).
func unreachable(err error) bool {
	var (
		dnsErr *net.DNSError
		opErr  *net.OpError
		netErr net.Error
	)
	if errors.Is(err, nats.ErrTLS) {
		// A TLS-first handshake (nats.TLSHandshakeFirst) that timed out
		// or was cut, as by a proxy with no backend, met no server; one
		// cut after it, a server refusing the client's certificate, which
		// nats.go says so.
		return !strings.Contains(err.Error(), "after TLS handshake") &&
			(errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET))
	}
	if errors.Is(err, nats.ErrAuthorization) {
		return false
	}
	switch {
	case errors.Is(err, nats.ErrNoServers), // nats.go's for refused connections
		errors.Is(err, nats.ErrTimeout),
		errors.As(err, &dnsErr),
		errors.As(err, &opErr) && opErr.Op == "dial",
		errors.As(err, &netErr) && netErr.Timeout(),
		errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return true
	}
	return false
}

// markConnected records that the connection was made, once.
func (b *Broker) markConnected() {
	b.connectedOnce.Do(func() { close(b.connected) })
}

// isConnected reports whether the connection was made once.
func (b *Broker) isConnected() bool {
	select {
	case <-b.connected:
		return true
	default:
		return false
	}
}

// awaitConnected waits until the connection is first made, ctx is done or
// the broker closed.
func (b *Broker) awaitConnected(ctx context.Context) error {
	select {
	case <-b.connected:
		return nil
	default:
	}
	select {
	case <-b.connected:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsjs: gave up waiting for the connection to %s: %w", b.describe(), ctx.Err())
	case <-b.closed:
		return pubsub.ErrClosed
	}
}

// handlers sets the connection's handlers the broker needs (Close waits for
// the closed one; publishes rely on the reconnect one), each calling the
// one an option of WithNATSOptions set before it, if any, after its own work
// (the closed one before: Close returns after the user's has run):
// replacing them would leave Close waiting 15s and streams unchecked after
// a reconnect.
func (b *Broker) handlers(no *nats.Options) error {
	closed, disconnected, asyncErr, reconnected := no.ClosedCB, no.DisconnectedErrCB, no.AsyncErrorCB, no.ReconnectedCB
	connected, reconnectErr := no.ConnectedCB, no.ReconnectErrCB
	no.ConnectedCB = func(nc *nats.Conn) {
		if b.notConnected.Load() != nil { // made in the background
			b.connectedLate(nc)
		} else {
			b.markConnected()
		}
		if connected != nil {
			connected(nc)
		}
	}
	no.ReconnectErrCB = func(nc *nats.Conn, err error) {
		if !b.isConnected() {
			// Before firstAttempt learns of it: New returns then, and its
			// caller's Check must find why it is not connected.
			b.notConnected.Store(&err)
			first := false
			b.firstErrOnce.Do(func() { first = true; b.firstErr <- err }) // New's walk's, for firstAttempt
			// A server that answers and refuses (TLS, say) is retried
			// forever: say so once, not at every attempt. Credentials
			// refused twice make nats.go give up (see ClosedCB).
			if !first && !unreachable(err) && err.Error() != b.refusal {
				b.refusal = err.Error()
				b.logger.Error("natsjs: a server of NATS_URL refuses the connection; still trying",
					"url", redactURLs(b.cfg.URL), "err", err)
			}
		}
		if reconnectErr != nil {
			reconnectErr(nc, err)
		}
	}
	no.ClosedCB = func(nc *nats.Conn) {
		// The user's first, so that Close, waiting for b.closed, returns
		// after it.
		if why := b.notConnected.Load(); why != nil && !b.isConnected() && !b.acks.isClosing() {
			// nats.go gave up: the server came, and refused (the same
			// authentication error twice). Every Subscriber's Run fails
			// with pubsub.ErrClosed, which stops a kit.Server.
			b.logger.Error("natsjs: gave up connecting; the broker is closed", "url", redactURLs(b.cfg.URL), "err", *why)
		}
		if closed != nil {
			closed(nc)
		}
		b.closeOnce.Do(func() { close(b.closed) })
	}
	b.noCallbacks = no.NoCallbacksAfterClientClose
	no.DisconnectedErrCB = func(nc *nats.Conn, err error) {
		b.acks.disconnected()
		if err != nil {
			b.logger.Warn("natsjs: disconnected", "err", err)
		}
		if disconnected != nil {
			disconnected(nc, err)
		}
	}
	// nats.go's default prints asynchronous errors (permissions violation,
	// slow consumer, drain timeout) to stderr, past the logs.
	no.AsyncErrorCB = func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			b.denied.Store(&err)
		}
		if sub != nil {
			b.logger.Error("natsjs: connection error", "err", err, "subject", sub.Subject)
		} else {
			b.logger.Error("natsjs: connection error", "err", err)
		}
		if asyncErr != nil {
			asyncErr(nc, sub, err)
		}
	}
	no.ReconnectedCB = func(nc *nats.Conn) {
		// The server may have come back without its storage, or be another
		// one: check the streams again before publishing.
		b.forgetStreams()
		b.dlOnce.reset()
		// And the consumers: each pulls again on a new inbox, or the pull
		// requests made before the reconnect would pile up (see
		// consumer.reconnected), and one may have been made again by
		// another instance (see consumer.checkExists).
		b.consumers.Range(func(k, _ any) bool {
			c := k.(*consumer)
			go c.reconnected()
			if c.checking.CompareAndSwap(false, true) {
				go c.checkExists()
			}
			return true
		})
		b.logger.Info("natsjs: reconnected", "url", redactURLs(nc.ConnectedUrl()))
		if reconnected != nil {
			reconnected(nc)
		}
	}
	return nil
}

// connectedLate marks the connection made after New returned, and checks
// JetStream as New would have: a server without it, or a user without
// the permissions it needs, is logged at error (Check fails with it, so
// readiness stays NOT_SERVING).
func (b *Broker) connectedLate(nc *nats.Conn) {
	b.logger.Info("natsjs: connected", "url", redactURLs(nc.ConnectedUrl()))
	b.markConnected()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Check(ctx); err != nil && !errors.Is(err, pubsub.ErrClosed) {
			if denied := b.denied.Load(); denied != nil {
				err = fmt.Errorf("%w (%w)", err, *denied)
			}
			b.logger.Error("natsjs: connected, but JetStream is not usable", "err", err)
		}
	}()
}

func (b *Broker) describe() string {
	if b.cfg.URL != "" {
		return "NATS at " + redactURLs(b.cfg.URL)
	}
	return "the embedded NATS server"
}

// redactURLs hides the secrets of a comma-separated list of NATS URLs, for
// errors and logs: the password of "nats://user:password@host" and the
// token of "nats://token@host" (url.URL.Redacted, which nats.go uses, hides
// only passwords). It works on strings that do not parse too. The user
// information before an '@' starts after the last "://" or '@' before it,
// not after a ',': nats.go splits the list at every ',', one in a password
// or token included, and the parts would show its start.
func redactURLs(urls string) string {
	var b strings.Builder
	done := 0 // urls[:done] is written
	for {
		at := strings.IndexByte(urls[done:], '@')
		if at < 0 {
			b.WriteString(urls[done:])
			return b.String()
		}
		at += done
		// A password may hold '@' too: up to the last one of its URL.
		end := len(urls)
		if i := strings.IndexByte(urls[at:], ','); i >= 0 {
			end = at + i
		}
		at += strings.LastIndexByte(urls[at:end], '@')
		start := done
		if i := strings.LastIndex(urls[done:at], "://"); i >= 0 {
			start = done + i + len("://")
		}
		b.WriteString(urls[done:start])
		if user, _, ok := strings.Cut(urls[start:at], ":"); ok {
			b.WriteString(user + ":xxxxx@")
		} else {
			b.WriteString("xxxxx@")
		}
		done = at + 1
	}
}

// cutUserinfo returns the user information of a NATS URL (all before its
// last '@', after the scheme) and the URL after the scheme, or false
// without any. The last '@' of the whole URL, not of its host part: a NATS
// URL has no path, query or fragment, and a password or token with an
// unescaped '/', '?' or '#' (as base64 ones have) would pass for one.
func cutUserinfo(u string) (userinfo, rest string, ok bool) {
	_, rest, found := strings.Cut(u, "://")
	if !found {
		rest = u
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return "", rest, false
	}
	return rest[:at], rest, true
}

// startServer starts the embedded server and waits until it accepts
// connections, or until it reports that it cannot start (a data directory
// that is a file or not writable, a port in use): nats-server logs that with
// Fatalf and stops starting, which would otherwise leave the wait to time
// out with the reason only in the log.
//
// It locks the data directory first (see [lockDataDir]); unlock releases
// it once the server has shut down.
func startServer(cfg Config, log *serverLogger) (srv *server.Server, unlock func(), err error) {
	release, err := lockDataDir(cfg.DataDir, lockFile)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	opts := &server.Options{
		ServerName:   nameOf(cfg.Name), // nats-server refuses spaces
		JetStream:    true,
		StoreDir:     cfg.DataDir,
		SyncInterval: cfg.SyncInterval,
		SyncAlways:   cfg.SyncAlways,
		NoSigs:       true,
		DontListen:   cfg.Listen == "",
	}
	if cfg.Listen != "" {
		host, port, _ := net.SplitHostPort(cfg.Listen) // checked by Validate
		opts.Host = host
		opts.Port, _ = strconv.Atoi(port)
	}
	srv, err = server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("natsjs: failed to configure the embedded NATS server: %w", err)
	}
	fatal := make(chan string, 1)
	log.fatal = fatal
	log.routine.Store(true) // the banner, version and JetStream limits
	srv.SetLoggerV2(log, false, false, false)
	srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		select {
		case reason := <-fatal:
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, nil, fmt.Errorf("natsjs: the embedded NATS server (data in %s) failed to start: %s", cfg.DataDir, reason)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, nil, fmt.Errorf("natsjs: the embedded NATS server (data in %s) did not start within 30s", cfg.DataDir)
		}
	}
	log.routine.Store(false)
	return srv, release, nil
}

// ClientURL returns the URL at which other processes reach the embedded
// server, or "" without one or when it listens in-process only. For a
// server listening on every interface (Listen ":4222", "0.0.0.0:4222",
// "[::]:4222"), whose own URL names the unspecified address, its host is
// the loopback address, 127.0.0.1 or ::1, as [Broker.ServerAddress]'s is;
// the broker's own connection dials this URL too (Windows refuses to dial
// the unspecified address).
func (b *Broker) ClientURL() string {
	if b.server == nil || b.cfg.Listen == "" {
		return ""
	}
	raw := b.server.ClientURL()
	u, err := neturl.Parse(raw)
	if err != nil {
		return raw
	}
	u.Host = loopbackForUnspecified(u.Host)
	return u.String()
}

// ServerAddress returns the host:port of the NATS server the broker's
// connection is on now, or "" between connections and for an embedded server
// without Listen, which the connection reaches in-process. It implements
// [pubsub.ServerAddresser], so that the spans of publishes and deliveries carry
// server.address and server.port. The host is as the server's URL names it:
// Config.URL's, or for a server the connection learned from the cluster, the
// address that server advertises; for an embedded server listening on every
// interface (Listen ":4222"), the loopback address the connection reaches.
// After a reconnect it is the server reconnected to; a span asks when it
// starts, so a delivery that waited in the consumer's buffer across a reconnect
// names the new server, not the one it came through.
func (b *Broker) ServerAddress() string {
	if b.server != nil && b.cfg.Listen == "" {
		return ""
	}
	raw := b.nc.ConnectedUrl()
	if raw == "" {
		return ""
	}
	u, err := neturl.Parse(raw)
	if err != nil {
		return ""
	}
	return loopbackForUnspecified(u.Host)
}

// loopbackForUnspecified returns hostport with an unspecified host (that
// of an embedded server listening on every interface, Listen ":4222",
// whose URL says 0.0.0.0 or ::) replaced by the loopback address a
// connection to it reaches; any other hostport as it is.
func loopbackForUnspecified(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil || !ip.IsUnspecified():
		return hostport
	case ip.To4() != nil:
		return net.JoinHostPort("127.0.0.1", port)
	default:
		return net.JoinHostPort("::1", port)
	}
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

func (b *Broker) stopServer() {
	if b.server != nil {
		b.serverLog.routine.Store(true) // "Initiating Shutdown...", "Server Exiting.."
		b.server.Shutdown()
		b.server.WaitForShutdown()
		b.unlock()
	}
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

// serverLogger logs the embedded server's messages with slog, and sends the
// first fatal one to fatal, for startServer. Its notices are info, but debug
// while routine is set, as the server starts (some 25 lines: a banner, its
// version and id, JetStream's limits) and shuts down: New logs one line of
// its own instead. Notices of a running server (a slow consumer, a stream
// restored from a snapshot) stay info, warnings and errors keep their levels.
type serverLogger struct {
	logger  *slog.Logger
	fatal   chan<- string
	routine atomic.Bool
}

func (l *serverLogger) Noticef(format string, v ...any) {
	level := slog.LevelInfo
	if l.routine.Load() {
		level = slog.LevelDebug
	}
	l.logger.Log(context.Background(), level, "nats-server: "+fmt.Sprintf(format, v...))
}
func (l *serverLogger) Warnf(format string, v ...any) {
	l.logger.Warn("nats-server: " + fmt.Sprintf(format, v...))
}
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.logger.Error("nats-server: " + msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l *serverLogger) Errorf(format string, v ...any) {
	l.logger.Error("nats-server: " + fmt.Sprintf(format, v...))
}
func (l *serverLogger) Debugf(format string, v ...any) {
	l.logger.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
func (l *serverLogger) Tracef(format string, v ...any) {
	l.logger.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
