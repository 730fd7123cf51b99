package natsjs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats.go"
)

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
		"url", redactURLs(b.cfg.URL), "error", err)
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
//
// nats.go runs them from its queue of callbacks, which it empties after
// the connection closed: one queued before Close may run after Close
// returned (at once with nats.NoCallbacksAfterClientClose, where Close
// does not wait for the closed handler). Once Close was called, nothing
// will reconnect: the connection handlers then log at debug, "... while
// closing", rather than announce a connection, a reconnect or more
// attempts, and start no work on the closed connection.
func (b *Broker) handlers(no *nats.Options) error {
	closed, disconnected, asyncErr, reconnected := no.ClosedCB, no.DisconnectedErrCB, no.AsyncErrorCB, no.ReconnectedCB
	connected, reconnectErr := no.ConnectedCB, no.ReconnectErrCB
	no.ConnectedCB = func(nc *nats.Conn) {
		switch late := b.notConnected.Load() != nil; { // made in the background
		case late && b.acks.isClosing():
			b.markConnected()
			b.logger.Debug("natsjs: connected while closing", "url", redactURLs(nc.ConnectedUrl()))
		case late:
			b.connectedLate(nc)
		default:
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
			if b.acks.isClosing() {
				b.logger.Debug("natsjs: failed to connect while closing", "error", err)
			} else if !first && !unreachable(err) && err.Error() != b.refusal {
				b.refusal = err.Error()
				b.logger.Error("natsjs: a server of NATS_URL refuses the connection; still trying",
					"url", redactURLs(b.cfg.URL), "error", err)
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
			b.logger.Error("natsjs: gave up connecting; the broker is closed", "url", redactURLs(b.cfg.URL), "error", *why)
		}
		if closed != nil {
			closed(nc)
		}
		b.closeOnce.Do(func() { close(b.closed) })
	}
	b.noCallbacks = no.NoCallbacksAfterClientClose
	no.DisconnectedErrCB = func(nc *nats.Conn, err error) {
		b.acks.disconnected()
		// Once Close was called, a warning would say a reconnect comes.
		if err != nil && !b.acks.isClosing() {
			b.logger.Warn("natsjs: disconnected", "error", err)
		} else if err != nil {
			b.logger.Debug("natsjs: disconnected while closing", "error", err)
		}
		if disconnected != nil {
			disconnected(nc, err)
		}
	}
	// nats.go's default prints asynchronous errors (permissions violation,
	// slow consumer, drain timeout) to stderr, past the logs. One that
	// runs after Close is logged as any other: it tells of something that
	// happened (Close's drain timing out, say), not of what comes next.
	no.AsyncErrorCB = func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			b.denied.Store(&err)
		}
		if sub != nil {
			b.logger.Error("natsjs: connection error", "error", err, "subject", sub.Subject)
		} else {
			b.logger.Error("natsjs: connection error", "error", err)
		}
		if asyncErr != nil {
			asyncErr(nc, sub, err)
		}
	}
	no.ReconnectedCB = func(nc *nats.Conn) {
		if b.acks.isClosing() {
			// Queued before Close: the connection is closed, or about to
			// be, and the consumers drained; there is nothing to pull on.
			b.logger.Debug("natsjs: reconnected while closing", "url", redactURLs(nc.ConnectedUrl()))
			if reconnected != nil {
				reconnected(nc)
			}
			return
		}
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
		if b.acks.isClosing() {
			// Close began meanwhile: the consumers pull nothing more (see
			// consumer.replace).
			b.logger.Debug("natsjs: reconnected while closing", "url", redactURLs(nc.ConnectedUrl()))
		} else {
			b.logger.Info("natsjs: reconnected", "url", redactURLs(nc.ConnectedUrl()))
		}
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
			b.logger.Error("natsjs: connected, but JetStream is not usable", "error", err)
			return
		}
		if err := b.notClusteredError(nc); err != nil { // New would have refused it; its publishes fail so
			b.logger.Error("natsjs: connected, but no stream can be created", "error", err)
			return
		}
		b.warnSingleReplica(nc)
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
