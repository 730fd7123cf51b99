package kit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"syscall"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
)

// redial sends a call again, up to clientRedials times, when the
// connection for it could not be opened, if its body can be sent again:
// the balancer picks the next address each time. A call whose connection
// the server reset (a killed process) fails with Unavailable (see
// peerGone; the addresses' round trippers, outlierTransport, wrap the
// bodies).
type redial struct{ next http.RoundTripper }

func (r redial) RoundTrip(req *http.Request) (*http.Response, error) {
	var written *atomic.Bool
	if replayable(req) {
		req, written = traceWrites(req)
	}
	resp, err := r.send(req)
	if err != nil {
		switch {
		case written != nil && written.Load() && req.Context().Err() == nil:
			// net/http wrote it on a connection that then failed, and
			// sent it again (see replayable): this attempt's failure
			// does not say that the first was not handled.
			return resp, lost(err)
		case errors.Is(err, interceptors.ErrNotSent): // the address's transport says so, and why (see cleartextTransport)
			return resp, err
		case err.Error() == httplbNoHealthy:
			return resp, noHealthy(req.URL.Host)
		case err.Error() == httplbNoAddresses:
			return resp, notSentError{fmt.Errorf("no addresses for %s: its name resolved to none (%w)", req.URL.Host, err)}
		case isDialError(err) || isResolveError(err):
			return resp, notSentError{err}
		}
		return resp, peerGone(req.Context(), err)
	}
	return resp, nil
}

// replayable reports whether net/http may send req again on a new
// connection after it wrote it on one that failed before an answer came
// (http.Request's isReplayable: a GET, HEAD, OPTIONS or TRACE, or a
// request with an Idempotency-Key, whose body can be sent again). A kept-
// alive HTTP/1.1 connection that the server closed after reading such a
// request, the server gone, makes that attempt fail to dial: the error
// of a request that its server may have handled.
func replayable(req *http.Request) bool {
	if !bodyResendable(req) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// traceWrites returns req with a trace that sets written once net/http has
// written it, or tried to (httptrace's WroteRequest, with or without an
// error), on any connection.
func traceWrites(req *http.Request) (*http.Request, *atomic.Bool) {
	w := new(writeTrace) // one allocation for both
	w.trace.WroteRequest = func(httptrace.WroteRequestInfo) { w.written.Store(true) }
	return req.WithContext(httptrace.WithClientTrace(req.Context(), &w.trace)), &w.written
}

// writeTrace is [traceWrites]'s trace and what it sets.
type writeTrace struct {
	trace   httptrace.ClientTrace
	written atomic.Bool
}

// httplbNoHealthy is the text of httplb's error (unexported) for a call
// that no address of its name can take: every one refused its last
// connection, and none has connected again since.
const httplbNoHealthy = "unavailable: no healthy connections"

// httplbNoAddresses is the text of httplb's error (unexported) for a call
// to a name whose last resolution gave no address. httplb 0.4.0 replaces
// it at once by httplbNoHealthy's (balancer.go's newPickerLocked sets one
// error picker, then the other), so that a call sees it only in between.
const httplbNoAddresses = "resolver returned no addresses"

// isResolveError reports whether err is the error of a name that did not
// resolve (the balancer's picker returns the resolver's error, a
// *net.DNSError for DNS, without a dial around it).
func isResolveError(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// notSentError is the error of a call of which nothing left the client,
// err: no connection could be opened for it, or its name resolved to no
// address. Its text is err's, and it is also [interceptors.ErrNotSent] to
// errors.Is, as noHealthy's error is.
type notSentError struct{ err error }

func (e notSentError) Error() string   { return e.err.Error() }
func (e notSentError) Unwrap() []error { return []error{e.err, interceptors.ErrNotSent} }

// noHealthy is the error of a call refused so: connect-go made of
// httplb's "unavailable: unavailable: no healthy connections", which named
// no service; a service that calls several could not tell which one was
// down. Nothing of the call left the client, so its cause is also
// [interceptors.ErrNotSent], which Retry retries as it does a dial that
// failed.
func noHealthy(host string) error {
	return connect.NewError(connect.CodeUnavailable, noHealthyError{host})
}

// noHealthyError is [noHealthy]'s cause: its text names the host, and it
// is [interceptors.ErrNotSent] to errors.Is.
type noHealthyError struct{ host string }

func (e noHealthyError) Error() string {
	return "no healthy connections to " + e.host + ": every address refused its last connection, and a probe dials each again every second"
}

func (noHealthyError) Unwrap() error { return interceptors.ErrNotSent }

// peerGone returns err as the error of lost when it says that the call's
// connection closed under it (see connLost) while the call's context is
// live. connect-go reads a reset or a broken pipe as a peer that went
// away, which on a server is its client, and gives its callers Canceled,
// which says the caller gave up: Retry would not retry an idempotent call.
// It calls a stream cut inside a message a protocol error (Internal).
// gRPC's clients say Unavailable.
func peerGone(ctx context.Context, err error) error {
	if ctx.Err() == nil && connLost(err) {
		return lost(err)
	}
	return err
}

// lost returns the Unavailable error of a call whose connection closed
// under it: its causes are [interceptors.ErrConnectionLost], so that a
// breaker does not count it, and err.
func lost(err error) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w: %w", interceptors.ErrConnectionLost, err))
}

// resetBody is the body of a response whose read errors go through
// peerGone: a stream's server can be killed after its headers came. When
// judge is set (a call that outlierInterceptor does not judge, whose
// headers showed no failure), the body gives the call's verdict on
// judge's address, once: a failure when its connection is lost under a
// read, else a success at its end (io.EOF, or Close before it), or for
// a gRPC answer what its trailers say at its end.
type resetBody struct {
	io.ReadCloser
	ctx   context.Context
	judge atomic.Pointer[outlierTransport] // nil: not judged here, or judged
	// trailer, of a gRPC answer whose status is in its trailers, is
	// judged once the body ends (net/http fills it then).
	trailer *http.Header
}

func (b *resetBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF { // Read returns io.EOF itself, unwrapped
		if b.judge.Load() != nil {
			b.verdict(b.trailer != nil && grpcFailed(first(*b.trailer, "Grpc-Status")))
		}
	} else if err != nil {
		err = peerGone(b.ctx, err)
		if b.judge.Load() != nil && b.ctx.Err() == nil && connect.CodeOf(err) == connect.CodeUnavailable {
			b.verdict(true)
		}
	}
	return n, err
}

// Close closes the body, and judges a call whose answer was not read to
// its end a success (the address answered), unless the verdict is in
// trailers that did not come.
func (b *resetBody) Close() error {
	if b.trailer == nil && b.judge.Load() != nil {
		b.verdict(false)
	}
	return b.ReadCloser.Close()
}

// verdict counts the call's verdict on the address of judge, if no
// other did; a failure once the caller gave up counts for nothing.
func (b *resetBody) verdict(failed bool) {
	if t := b.judge.Swap(nil); t != nil && (!failed || b.ctx.Err() == nil) {
		t.h.result(t.addr, failed)
	}
}

// connLost reports whether err says that a call's connection closed under
// it: reset by the server, broken under a write, closed before the
// response ended (HTTP/2 reads so a connection's end, HTTP/1.1 a body cut
// short), closed by net/http after a write on it failed (a reset that
// another stream's write saw first), or closed for a ping left unanswered.
func connLost(err error) bool {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	for ; err != nil; err = errors.Unwrap(err) {
		switch err.Error() { // net/http's HTTP/2 errors are not exported
		case "http2: client connection force closed via ClientConn.Close", "http2: client connection lost":
			return true
		}
	}
	return false
}

// send makes the call, and makes it again while its connection could not
// be opened.
func (r redial) send(req *http.Request) (*http.Response, error) {
	for tries := 0; ; tries++ {
		resp, err := r.next.RoundTrip(req)
		if err == nil || tries == clientRedials || !isDialError(err) || req.Context().Err() != nil {
			return resp, err
		}
		again, bodyErr := withNewBody(req)
		if bodyErr != nil {
			return resp, err
		}
		req = again
	}
}

// bodyResendable reports whether req's body can be sent again: it has
// none, or a GetBody.
func bodyResendable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// withNewBody returns req to send again: itself when it has no body, else
// a copy with a new body from GetBody, or an error when it cannot have one.
func withNewBody(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	if req.GetBody == nil {
		return nil, errors.New("its body was read, and it has no GetBody to read it again")
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("its GetBody failed: %w", err)
	}
	req = req.Clone(req.Context())
	req.Body = body
	return req, nil
}

// isDialError reports whether err says that a connection could not be
// opened, so that nothing of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
