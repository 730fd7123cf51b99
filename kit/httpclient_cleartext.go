package kit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/bufbuild/httplb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/telemetry"
)

// A server at an http:// address that speaks only HTTP/1.x (a webhook, a
// legacy REST API, a net/http server without h2c) reads the h2c preface,
// "PRI * HTTP/2.0", as a request, answers it in HTTP/1.1 and closes the
// connection; net/http's HTTP/2 client then fails the call with whichever
// of "frame too large … looked like an HTTP/1.1 header", "broken pipe" or
// "client conn could not be established" the timing gives. Its
// connections show it independently of that: an HTTP/2 server's first
// bytes are a SETTINGS frame, whose first byte is 0 (its length is under
// 64KiB), an HTTP/1.x server's are "HTTP/1.". So each h2c connection looks
// at them (sniffConn), and the address's round tripper (cleartextTransport)
// sends a call that failed on such a server again over HTTP/1.1, with
// net/http's own HTTP/1.1 transport, and the address's next calls straight
// there. The call reached no handler as itself (the server saw "PRI *",
// then the rest of the preface, "SM", which no HTTP/1.x server takes for a
// request), so sending it again repeats nothing.
const http1Prefix = "HTTP/1."

// Once a connection showed it, the address is known to speak HTTP/1.x only
// until one shows HTTP/2: an h2c connection whose server sent a SETTINGS
// frame, or an HTTP/1.1 connection whose server answered with one, or
// silentCloses in a row that their server closed without a byte (an
// HTTP/2-only server in its place or beside it: see h1Conn). No clock sends an HTTP/1.x server the h2c preface again,
// which its handler would get as a request "PRI *": its calls that work
// over HTTP/1.1 (Connect's unary ones, gRPC-Web, REST) stay there, and
// only those made for HTTP/2 (see prefersHTTP2) try h2c again, as
// mayProbe lets them: freely until probeFreely h2c connections in a row
// found HTTP/1.x (so that behind an L4 balancer in front of servers of
// both kinds, during a rollout, a call's next connection may reach an
// HTTP/2 one), then one probeWait later, and each next one twice as long
// after the last, up to probeMaxWait.
const (
	probeFreely  = 2 // h2c connections in a row answered in HTTP/1.x before probes wait
	probeWait    = time.Second
	probeMaxWait = 5 * time.Minute
)

// silentCloses is how many HTTP/1.1 connections in a row, with no call
// answered over HTTP/1.1 between them, their server must close without a
// byte after a request was written for the address to be no longer known
// to speak HTTP/1.x (see h1Conn). One is not enough: an HTTP/1.x server
// closes so on an error of its own too (a net/http handler's panic,
// http.ErrAbortHandler among them; nginx's "return 444"), and each such
// error would send the next calls' h2c preface to its handler as a
// request "PRI *". An HTTP/2-only server closes so on every connection:
// it costs one more failed call to find.
const silentCloses = 2

// maxSends bounds the sends of one call: its first, and one more each time
// the connection it took showed a server of the other protocol (which no
// handler saw it on).
const maxSends = 4

// sniffWait bounds the wait for a server's first bytes when a write to its
// connection failed before any was read: an HTTP/1.x server's answer
// precedes its close, so it is already there unless the server sent none.
const sniffWait = 100 * time.Millisecond

// http1IdleConns is how many idle HTTP/1.1 connections the client keeps to
// one address that speaks only HTTP/1.x: a connection carries one call at
// a time there, so http.DefaultTransport's 2 would make a dial of most
// calls of a service called 16 at a time.
const http1IdleConns = 16

// http1MaxConns caps the HTTP/1.1 connections open to one address at once
// (http.Transport's MaxConnsPerHost, unlimited by default): a call beyond
// it waits for one of them to finish its call, as long as its context
// lets it. It is the number of calls that the one h2c connection the
// client keeps to an address carries at once to a kit server
// (KIT_MAX_CONCURRENT_STREAMS' default) or to any net/http one (its
// HTTP/2 server's default), so that a burst of calls opens no more
// connections to an HTTP/1.x server than it could have run at once over
// HTTP/2, where without a cap each call of the burst opened its own.
const http1MaxConns = DefaultMaxConcurrentStreams

// cleartextTransport is the round tripper of one http:// address: HTTP/2
// with prior knowledge (h2c), or HTTP/1.1 while the address is known to
// speak only HTTP/1.x (see http1Prefix), for the calls that work so.
type cleartextTransport struct {
	h2c    *http.Transport
	cfg    httplb.TransportConfig
	addr   string
	logger *slog.Logger
	// http1Calls counts the calls sent over HTTP/1.1, by peer; nil: none.
	http1Calls *prometheus.CounterVec

	// http1Since is the UnixNano of the last HTTP/1.x answer that an h2c
	// connection to addr got while addr was known to speak HTTP/1.x
	// only, or since; 0 while it is not known so.
	http1Since atomic.Int64
	http1      atomic.Pointer[http.Transport] // made when first needed
	// h1Streak counts the h2c connections in a row that found HTTP/1.x,
	// probeAfter is the UnixNano before which no call probes (see
	// mayProbe).
	h1Streak, probeAfter atomic.Int64
	// silent is the read error of the last connection whose server
	// closed it without a byte; nil once a server answered.
	silent atomic.Pointer[error]
	// h1Silent counts the HTTP/1.1 connections in a row whose server
	// closed them without a byte after a request was written (see
	// h1Conn), since the last call answered over HTTP/1.1 or the last
	// change of the mark.
	h1Silent atomic.Int64
	// h2Open counts the open connections whose server answered other
	// than in HTTP/1.x (HTTP/2), h2Answers every one that ever did: a
	// call's h2c attempt during which both stayed put ran on a
	// connection whose server answered in HTTP/1.x or not at all.
	h2Open, h2Answers atomic.Int64
}

// newCleartextTransport returns the round tripper of the http:// address
// addr, whose connections cfg opens.
func newCleartextTransport(addr string, cfg httplb.TransportConfig, logger *slog.Logger) *cleartextTransport {
	t := &cleartextTransport{cfg: cfg, addr: addr, logger: logger}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	sniffed := cfg
	sniffed.DialFunc = t.dial
	t.h2c = newLeafTransport(sniffed, &protocols)
	return t
}

func (t *cleartextTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	known := t.http1Since.Load()
	if known != 0 && t.h2Open.Load() == 0 { // with an HTTP/2 connection open, h2c first
		if !prefersHTTP2(req) || !t.mayProbe() {
			return t.send(req, true, 1, false)
		}
		req = probing(req)
	}
	// send's h2c attempt, written out: an h2c call pays no more than it.
	answers, open := t.h2State()
	resp, err := t.h2c.RoundTrip(req)
	if err == nil || req.Context().Err() != nil {
		return resp, err
	}
	return t.afterH2C(req, err, known, open == 0 && t.h2Answers.Load() == answers, 1, false)
}

// send makes the sends-th send of a call, req, over HTTP/1.1 or h2c, and
// sends it again while a server of the other protocol refused it, up to
// maxSends in all; sawH2 says that an HTTP/2 server refused one of them.
func (t *cleartextTransport) send(req *http.Request, overHTTP1 bool, sends int, sawH2 bool) (*http.Response, error) {
	if !overHTTP1 {
		known := t.http1Since.Load()
		answers, open := t.h2State()
		resp, err := t.h2c.RoundTrip(req)
		if err == nil || req.Context().Err() != nil {
			return resp, err
		}
		return t.afterH2C(req, err, known, open == 0 && t.h2Answers.Load() == answers, sends, sawH2)
	}
	resp, err := t.viaHTTP1(req)
	if err == nil || req.Context().Err() != nil || !errors.As(err, new(*http2AnswerError)) {
		return resp, err
	}
	if sends == maxSends {
		return nil, t.refusedEach(err)
	}
	again, bodyErr := withNewBody(req)
	if bodyErr != nil {
		return nil, connect.NewError(connect.CodeUnavailable, http2OnlyError{addr: t.addr, cause: err, body: bodyErr})
	}
	return t.send(again, false, sends+1, true) // h2c, which the HTTP/2 answer allowed again
}

// afterH2C returns err, the error of req's sends-th send, its h2c attempt
// begun with the address's mark at known (see refusedAsHTTP1 for noH2),
// or, when an HTTP/1.x server refused it, sends it again: over h2c on a
// new connection, which may reach an HTTP/2 server, if it prefers HTTP/2
// and an HTTP/2 server refused one of its sends (sawH2) or mayProbe lets
// it, and sends are left for an HTTP/1.1 one after it; else over HTTP/1.1.
func (t *cleartextTransport) afterH2C(req *http.Request, err error, known int64, noH2 bool, sends int, sawH2 bool) (*http.Response, error) {
	if !t.refusedAsHTTP1(err, known, noH2) {
		return nil, t.named(err)
	}
	if sends == maxSends {
		return nil, t.refusedEach(err)
	}
	again, bodyErr := withNewBody(req)
	if bodyErr != nil {
		return nil, connect.NewError(connect.CodeUnavailable, http1OnlyError{addr: t.addr, cause: err, body: bodyErr})
	}
	if sends < maxSends-1 && prefersHTTP2(again) && (sawH2 || t.mayProbe()) {
		return t.send(probing(again), false, sends+1, sawH2)
	}
	return t.send(again, true, sends+1, sawH2)
}

// refusedEach returns the Unavailable error of a call whose maxSends
// sends a server of the other protocol refused each, err being the last
// one's: no handler saw it, so it is [interceptors.ErrNotSent] to
// errors.Is, which Retry retries.
func (t *cleartextTransport) refusedEach(err error) error {
	return connect.NewError(connect.CodeUnavailable, notSentError{fmt.Errorf(
		"the server at %s refused each of the call's %d sends, over h2c and HTTP/1.1, as one of the other protocol (no handler saw it; an L4 balancer in front of HTTP/1.x-only and HTTP/2-only servers?): %w",
		t.addr, maxSends, err)})
}

// prefersHTTP2 reports whether req is a call of a protocol made for
// HTTP/2: gRPC (not gRPC-Web), which grpc-go's servers serve over nothing
// else, or a Connect stream, among which bidirectional ones need HTTP/2
// end to end. Others (Connect's unary calls, gRPC-Web, REST) work over
// HTTP/1.1 alike.
func prefersHTTP2(req *http.Request) bool {
	ct := req.Header.Get("Content-Type")
	if rest, ok := strings.CutPrefix(ct, "application/grpc"); ok {
		return !strings.HasPrefix(rest, "-web")
	}
	return strings.HasPrefix(ct, "application/connect+")
}

// mayProbe reports whether a call that prefers HTTP/2 may open an h2c
// connection to the address known to speak HTTP/1.x only (see
// probeFreely), and if so takes the probe's turn.
func (t *cleartextTransport) mayProbe() bool {
	streak := t.h1Streak.Load()
	if streak < probeFreely {
		return true
	}
	now, after := time.Now().UnixNano(), t.probeAfter.Load()
	if now < after {
		return false
	}
	wait := min(probeWait<<min(streak-probeFreely, 16), probeMaxWait)
	return t.probeAfter.CompareAndSwap(after, now+int64(wait))
}

// probeKey marks the context of a call that may open an h2c connection to
// an address known to speak HTTP/1.x only (see dial).
type probeKey struct{}

// probing returns req, allowed to open an h2c connection.
func probing(req *http.Request) *http.Request {
	return req.WithContext(context.WithValue(req.Context(), probeKey{}, true))
}

// viaHTTP1 sends req over HTTP/1.1: it counts it in http1Calls by its
// Host (the host and port called, which httplb keeps while it sends the
// request to one of its addresses), and its client span, if it has one,
// says so (network.protocol.version "1.1"), unless an HTTP/2 server
// refused it (see h1Conn): send then sends it again over h2c, where it
// is not an HTTP/1.1 call.
func (t *cleartextTransport) viaHTTP1(req *http.Request) (*http.Response, error) {
	resp, err := t.http1Transport().RoundTrip(req)
	if err != nil && errors.As(err, new(*http2AnswerError)) {
		return resp, err
	}
	if err == nil && t.h1Silent.Load() != 0 { // an HTTP/1.x answer: the silent closes before it are its server's errors
		t.h1Silent.Store(0)
	}
	if t.http1Calls != nil {
		t.http1Calls.WithLabelValues(req.Host).Inc()
	}
	telemetry.MarkHTTP1(req.Context())
	return resp, err
}

// refusedAsHTTP1 reports whether err, the error of a call's h2c attempt
// begun with the address's mark at known, says that the call reached no
// handler as itself because an HTTP/1.x server has the address. It does
// when the call's own connection found its server answering so (its reads
// return an http1AnswerError) or its dial was refused for that. Else, once
// the address is known so: when the call's connection closed before it
// was written (net/http says only h2NotEstablished), or when net/http
// failed it with an error of its own on a connection that an HTTP/1.x
// answer closed ("client conn is closed" to a body waiting for flow
// control, "cannot rewind body" to one it could not send on the next),
// which names no connection: the address must
// have been found so during the call, and no connection to it must have
// had an HTTP/2 answer meanwhile (noH2), so that the call's connection got
// an HTTP/1.x answer or none, and an HTTP/2 server sends its SETTINGS
// before it handles a request. Otherwise the error is the call's own, even
// when another connection found an HTTP/1.x server meanwhile (an L4
// balancer in front of servers of both kinds, during a rollout): its
// handler may have seen it, and sending it again could handle it twice.
func (t *cleartextTransport) refusedAsHTTP1(err error, known int64, noH2 bool) bool {
	var answered *http1AnswerError
	switch {
	case errors.As(err, &answered):
		return true
	case !t.knownHTTP1():
		return false
	case err.Error() == h2NotEstablished:
		return true
	}
	return noH2 && t.http1Since.Load() != known
}

// h2State returns h2Answers and h2Open, loaded in that order: a
// connection's HTTP/2 answer adds to h2Open, then to h2Answers, so one
// that answers between the loads shows in h2Open or in a later load of
// h2Answers. Loaded the other way round, it could show in neither (h2Open
// before its answer, h2Answers after), and a call that it then carried,
// failed by its close, was taken for one that no HTTP/2 server saw.
func (t *cleartextTransport) h2State() (answers, open int64) {
	answers = t.h2Answers.Load()
	return answers, t.h2Open.Load()
}

// knownHTTP1 reports whether the address is known to speak HTTP/1.x only.
func (t *cleartextTransport) knownHTTP1() bool {
	return t.http1Since.Load() != 0
}

// h2NotEstablished is the text of net/http's error (unexported) for a
// call that was to be the first on a connection that closed before it
// could be sent: nothing of it left, but the error says not why.
const h2NotEstablished = "http2: client conn could not be established"

// named returns err, or for h2NotEstablished, the error of the server's
// close, caused by [interceptors.ErrNotSent].
func (t *cleartextTransport) named(err error) error {
	if silent := t.silent.Load(); silent != nil && err.Error() == h2NotEstablished {
		return notSentError{fmt.Errorf("the server at %s closed the connection before it answered: %w", t.addr, *silent)}
	}
	return err
}

// CloseIdleConnections closes the idle connections of both protocols.
func (t *cleartextTransport) CloseIdleConnections() {
	t.h2c.CloseIdleConnections()
	if h1 := t.http1.Load(); h1 != nil {
		h1.CloseIdleConnections()
	}
}

// http1Transport returns the HTTP/1.1 transport of the address, made at its
// first use: a client of kit servers alone never makes one.
func (t *cleartextTransport) http1Transport() *http.Transport {
	if h1 := t.http1.Load(); h1 != nil {
		return h1
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	cfg := t.cfg
	cfg.DialFunc = t.dialHTTP1
	h1 := newLeafTransport(cfg, &protocols)
	h1.MaxIdleConns, h1.MaxIdleConnsPerHost, h1.MaxConnsPerHost = http1IdleConns, http1IdleConns, http1MaxConns
	if !t.http1.CompareAndSwap(nil, h1) {
		return t.http1.Load() // another call's, made at the same time; h1 opened nothing
	}
	return h1
}

// dial opens an h2c connection that looks at its server's first bytes. It
// refuses while the address is known to speak HTTP/1.x only, but for a
// probe (see mayProbe): the calls that get there began on an h2c
// connection that its server's HTTP/1.x answer closed, before they were
// written on it, and net/http sends them again on a new one (after a
// second's backoff the second time); refused, they go over HTTP/1.1 at
// once, and the server sees no more prefaces.
func (t *cleartextTransport) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if t.knownHTTP1() && ctx.Value(probeKey{}) == nil {
		return nil, &http1AnswerError{addr: t.addr}
	}
	c, err := t.cfg.DialFunc(ctx, network, addr)
	if err != nil {
		return c, err
	}
	return &sniffConn{Conn: c, peer: t}, nil
}

// dialHTTP1 opens an HTTP/1.1 connection that looks at its server's first
// byte (see h1Conn).
func (t *cleartextTransport) dialHTTP1(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := t.cfg.DialFunc(ctx, network, addr)
	if err != nil {
		return c, err
	}
	return newH1Conn(c, t), nil
}

// sawHTTP1 records that an h2c connection's server answered in HTTP/1.x.
func (t *cleartextTransport) sawHTTP1() {
	t.h1Streak.Add(1)
	t.h1Silent.Store(0)
	if t.http1Since.Swap(time.Now().UnixNano()) == 0 {
		t.logger.Info("HTTP client: server speaks HTTP/1.x only, not h2c: calling it over HTTP/1.1", "peer", t.addr)
	}
}

// sawHTTP2 records that a connection's server answered in HTTP/2, or did
// what one may do (how, in the log line).
func (t *cleartextTransport) sawHTTP2(how string) {
	t.h1Streak.Store(0)
	t.h1Silent.Store(0)
	if t.http1Since.Swap(0) != 0 {
		t.logger.Info("HTTP client: server known to speak HTTP/1.x only "+how+": calling it over h2c again", "peer", t.addr)
	}
}

// http1OnlyError is the cause of the Unavailable error of a call to an
// HTTP/1.x-only server that could not be sent again over HTTP/1.1, its
// body being gone (no GetBody). Its handler did not see it, so it is
// [interceptors.ErrNotSent] to errors.Is, which Retry retries; the
// address's next calls go over HTTP/1.1. The h2c attempt's error, cause,
// is in its text only: it is not a connection lost.
type http1OnlyError struct {
	addr        string
	cause, body error
}

func (e http1OnlyError) Error() string {
	return fmt.Sprintf("the server at %s speaks HTTP/1.x only, not HTTP/2 with prior knowledge (h2c), and the request's body could not be sent again over HTTP/1.1 (%v); "+
		"no handler saw it, and the next calls to %s go over HTTP/1.1: send it again, or give the request a GetBody (http.NewRequest does for a bytes or strings reader) "+
		"(h2c attempt: %v)", e.addr, e.body, e.addr, e.cause)
}

func (http1OnlyError) Unwrap() error { return interceptors.ErrNotSent }
