package interceptors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"golang.org/x/net/http/httpguts"
)

// The bounds on the headers that [ForwardHeaders] forwards from one call:
// values (several values of one name count each), and bytes of names and
// values (a name counts once per value, as in HTTP/2's header list size).
const (
	maxForwardedValues = 32
	maxForwardedBytes  = 8 << 10
)

// ForwardHeaders returns an interceptor that forwards headers from the call
// a server handles to the calls made in its context, as Kratos'
// metadata.Server() and metadata.Client() do for "x-md-global-*". Give it to
// a server's handlers and to the clients its handlers call with; [Default]
// does both with [WithForwardHeaders].
//
// Each name is a header name, or a prefix ending in "*" ("x-md-global-*"),
// matched without regard to case. On a server, the headers of the call that
// match are kept in its context, every value of each; a call whose matching
// headers hold more than 32 values, or 8 KiB of names and values (a name
// counted once per value), fails with InvalidArgument before its handler
// runs, rather than forward some of them, and so does a pubsub delivery,
// which pubsub then does not redeliver. On a client, a call made in such a
// context sends them, except those the caller set on its request itself
// (for a client or bidi stream, on its RequestHeader before the first
// Send), which win. A pubsub publish made in it is such a call: its
// message carries them, and the delivery's context forwards them in turn.
//
// A prefix never matches Authorization, Proxy-Authorization or Cookie,
// which are forwarded only when named, nor the headers that the protocols
// and the chain set themselves: Content-Type, Content-Length,
// Content-Encoding, Accept-Encoding, Host, User-Agent, the hop-by-hop
// headers (Connection, TE…), Grpc-*, Connect-*, Pubsub-*, and
// Traceparent, Tracestate, Baggage ([Tracing] forwards them) and
// X-Request-Id ([RequestID] does). Naming one of these latter, a prefix of
// Grpc-, Connect- or Pubsub- headers, a bare "*", a "*" anywhere but at
// the end, or a name that is not a valid header name is an error.
func ForwardHeaders(names ...string) (connect.Interceptor, error) {
	if len(names) == 0 {
		return nil, errors.New("interceptors: ForwardHeaders: no header names")
	}
	f := &forwarder{names: strings.Join(names, ", ")}
	for _, name := range names {
		prefix, isPrefix := strings.CutSuffix(name, "*")
		if strings.Contains(prefix, "*") { // a valid header name byte, but meant as a pattern
			return nil, fmt.Errorf(`interceptors: ForwardHeaders: %q: only a final "*" matches, as in "x-md-global-*"`, name)
		}
		if !isPrefix {
			if !httpguts.ValidHeaderFieldName(name) {
				return nil, fmt.Errorf("interceptors: ForwardHeaders: %q is not a header name (a prefix ends in \"*\")", name)
			}
			canonical := http.CanonicalHeaderKey(name)
			if why := reservedHeader(canonical); why != "" {
				return nil, fmt.Errorf("interceptors: ForwardHeaders: %q is not forwarded: %s", name, why)
			}
			f.exact = append(f.exact, canonical)
			continue
		}
		if prefix == "" {
			return nil, errors.New(`interceptors: ForwardHeaders: "*" would forward every header: name a prefix, as "x-md-global-*"`)
		}
		if !httpguts.ValidHeaderFieldName(prefix) {
			return nil, fmt.Errorf("interceptors: ForwardHeaders: %q is not a header name prefix", name)
		}
		for _, p := range reservedPrefixes {
			if len(prefix) >= len(p) && strings.EqualFold(prefix[:len(p)], p) {
				return nil, fmt.Errorf("interceptors: ForwardHeaders: %q is not forwarded: the protocols set %s* headers", name, p)
			}
		}
		f.prefixes = append(f.prefixes, prefix)
	}
	return f, nil
}

// reservedPrefixes are the prefixes of headers the protocols (gRPC,
// Connect) and pubsub's messages set.
var reservedPrefixes = []string{"Grpc-", "Connect-", "Pubsub-"}

// reservedHeader says why the header of canonical name k cannot be
// forwarded, or "" if it can.
func reservedHeader(k string) string {
	switch k {
	case "Content-Type", "Content-Length", "Content-Encoding", "Accept-Encoding", "Host", "User-Agent",
		"X-User-Agent", "X-Grpc-Web":
		return "the protocols set it"
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return "it is a hop-by-hop header, which belongs to one connection"
	case "Traceparent", "Tracestate", "Baggage":
		return "the Tracing interceptor forwards it, with its propagator"
	case RequestIDHeader:
		return "the RequestID interceptor forwards it"
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(k, p) {
			return "the protocols set " + p + "* headers"
		}
	}
	return ""
}

// forwarder is the interceptor of [ForwardHeaders].
type forwarder struct {
	exact    []string // canonical names, compared without regard to case
	prefixes []string // as given, compared without regard to case
	names    string   // the names as given, for errors
}

type forwardedKey struct{}

// forwardedFrom returns the headers the call ctx belongs to forwards.
func forwardedFrom(ctx context.Context) http.Header {
	h, _ := ctx.Value(forwardedKey{}).(http.Header)
	return h
}

// matches returns the canonical name of the header of name k, and
// whether it is forwarded. It compares without regard to case, and
// canonicalizes only the names that match: canonicalizing every header of
// every call first (a delivery's keys may be in any case) added 5,600
// instructions to a served call with seven headers and none to forward,
// this adds 2,800 (BenchmarkForwardHeaders under callgrind).
func (f *forwarder) matches(k string) (string, bool) {
	for _, name := range f.exact {
		if strings.EqualFold(k, name) {
			return name, true
		}
	}
	for _, p := range f.prefixes {
		if len(k) >= len(p) && strings.EqualFold(k[:len(p)], p) {
			k = http.CanonicalHeaderKey(k)
			return k, reservedHeader(k) == "" && !authHeader(k)
		}
	}
	return "", false
}

// authHeader reports whether k carries credentials: forwarded only when
// named.
func authHeader(k string) bool {
	return k == "Authorization" || k == "Proxy-Authorization" || k == "Cookie"
}

// keep returns ctx holding the headers of h to forward, or ctx itself
// when there are none, or an error when they are over the bounds.
func (f *forwarder) keep(ctx context.Context, h http.Header) (context.Context, error) {
	var out http.Header
	values, size := 0, 0
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		k, ok := f.matches(k)
		if !ok {
			continue
		}
		if out == nil {
			out = http.Header{}
		}
		out[k] = append(out[k], v...)
		values += len(v)
		for _, s := range v {
			size += len(k) + len(s)
		}
	}
	if values > maxForwardedValues || size > maxForwardedBytes {
		return ctx, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(
			"the headers to forward (%s) hold %d values of %d bytes: at most %d values of %d bytes are forwarded",
			f.names, values, size, maxForwardedValues, maxForwardedBytes))
	}
	if out == nil {
		return ctx, nil
	}
	return context.WithValue(ctx, forwardedKey{}, out), nil
}

// sendForwarded sets on h, an outgoing call's request header, the forwarded
// headers that it does not hold yet, under any case: a key the caller set
// in lower case (h["x-tenant"], as grpc-go's metadata spells it) is the
// same header on the wire, where the forwarded one would go on beside it.
// The values are shared, clipped so that an append to them copies.
func sendForwarded(fwd, h http.Header) {
	for k, v := range fwd {
		if !holds(h, k) {
			h[k] = slices.Clip(v)
		}
	}
}

// holds reports whether h has the header of canonical name k, under a key
// in any case. Where k is missing, the search of h's keys costs an
// outgoing call ~600 instructions per forwarded header (callgrind, four
// keys in h); looking once for a key not in canonical form costs as much.
func holds(h http.Header, k string) bool {
	if _, ok := h[k]; ok {
		return true
	}
	for hk := range h {
		if len(hk) == len(k) && strings.EqualFold(hk, k) {
			return true
		}
	}
	return false
}

func (f *forwarder) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			if fwd := forwardedFrom(ctx); fwd != nil {
				sendForwarded(fwd, req.Header())
			}
			return next(ctx, req)
		}
		ctx, err := f.keep(ctx, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (f *forwarder) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if fwd := forwardedFrom(ctx); fwd != nil {
			return &forwardingClientConn{StreamingClientConn: conn, fwd: fwd}
		}
		return conn
	}
}

// forwardingClientConn sets the forwarded headers on a client stream's
// request header when it goes out, with the first Send or CloseRequest,
// so that those the caller set after the stream was made win.
type forwardingClientConn struct {
	connect.StreamingClientConn
	fwd  http.Header
	once sync.Once
}

func (c *forwardingClientConn) settle() { sendForwarded(c.fwd, c.RequestHeader()) }

func (c *forwardingClientConn) Send(msg any) error {
	c.once.Do(c.settle)
	return c.StreamingClientConn.Send(msg)
}

func (c *forwardingClientConn) CloseRequest() error {
	c.once.Do(c.settle)
	return c.StreamingClientConn.CloseRequest()
}

func (f *forwarder) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := f.keep(ctx, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
