package interceptors

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/msgctx"
)

// RequestIDHeader is the header that carries a call's request id, in both
// directions: "X-Request-Id".
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds the length of an accepted incoming request id.
const maxRequestIDLen = 128

// RequestID returns an interceptor that gives every call a request id.
//
// On a server, the id is the caller's X-Request-Id header when it is valid
// (1 to 128 bytes of letters, digits and -_.:/+=@), otherwise a new random
// UUID; it is echoed in the X-Request-Id response header (also on errors;
// not for a pubsub delivery, which has no caller to read it) and is
// available to the handler and inner interceptors from
// [RequestIDFrom].
//
// On a client, the id sent in X-Request-Id is, in order: the one already set
// on the request (for a client or bidi stream, on its RequestHeader before
// the first Send), the one of the call being served ([RequestIDFrom] the
// context), or a new one. So a request id follows a request from service to
// service.
func RequestID() connect.Interceptor {
	return requestIDInterceptor{}
}

// RequestIDFrom returns the request id of the call ctx belongs to, or "" if
// the [RequestID] interceptor did not see it.
func RequestIDFrom(ctx context.Context) string {
	switch c := ctx.Value(requestIDKey{}).(type) {
	case *requestIDContext:
		return c.id
	case *streamIDContext:
		return *c.id.Load()
	}
	return ""
}

type requestIDKey struct{}

// requestIDContext carries the request id. It is a context type of its own,
// rather than context.WithValue, so that adding the id costs one allocation
// instead of two (the value context and the boxed string); on a server, it
// also holds the response header's value, which connect copies out.
type requestIDContext struct {
	context.Context
	id     string
	header [1]string
}

func (c *requestIDContext) Value(key any) any {
	if key == (requestIDKey{}) {
		return c
	}
	return c.Context.Value(key)
}

type requestIDInterceptor struct{}

func (requestIDInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(clientUnaryRequestID(ctx, req), req)
		}
		c := serverUnaryRequestID(ctx, req)
		resp, err := next(c, req)
		if msgctx.FromContext(ctx) != nil {
			return resp, err // a delivery: its response goes nowhere
		}
		return echoRequestID(resp, err, c)
	}
}

// clientUnaryRequestID sets the request's X-Request-Id as Header.Get and
// Header.Set would, without canonicalizing the constant key on each (~850
// instructions a call): every publish through pubsub takes this path. The
// value is a slice of its own, not one in the context's allocation: a
// message keeps its headers, which must not keep the publisher's context.
func clientUnaryRequestID(ctx context.Context, req connect.AnyRequest) context.Context {
	h := req.Header()
	ctx, id := clientRequestID(ctx, header.Get(h, RequestIDHeader))
	h[RequestIDHeader] = []string{id}
	return ctx
}

func serverUnaryRequestID(ctx context.Context, req connect.AnyRequest) *requestIDContext {
	id := serverRequestID(header.Get(req.Header(), RequestIDHeader))
	return &requestIDContext{Context: ctx, id: id, header: [1]string{id}}
}

// echoRequestID puts the id in the response headers, or in the error's
// metadata, which connect sends as headers or trailers.
func echoRequestID(resp connect.AnyResponse, err error, c *requestIDContext) (connect.AnyResponse, error) {
	if err != nil {
		return resp, withErrorMeta(err, RequestIDHeader, c.id)
	}
	if resp == nil {
		return resp, nil
	}
	// connect appends the values of the response's own header to the
	// HTTP response's: they can be the context's, without an allocation.
	// (Not straight to the HTTP response's header: a handler between kit and
	// connect, such as http.TimeoutHandler, may run the call on a goroutine
	// of its own with a ResponseWriter of its own, while the connection's
	// goroutine writes that header.)
	resp.Header()[RequestIDHeader] = c.header[:]
	return resp, nil
}

func (requestIDInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		id := RequestIDFrom(ctx)
		if id == "" {
			id = newRequestID()
		}
		c := &streamIDContext{Context: ctx}
		c.id.Store(&id)
		return &requestIDClientConn{StreamingClientConn: next(c, spec), ctx: c}
	}
}

// streamIDContext carries the request id of a client stream, which is known
// only when the request headers go out: the caller sets its own on them
// after the interceptors made the stream (for a server stream, connect
// copies the request's headers in then).
type streamIDContext struct {
	context.Context
	id atomic.Pointer[string]
}

func (c *streamIDContext) Value(key any) any {
	if key == (requestIDKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// requestIDClientConn settles a client stream's request id when its request
// headers go out, with its first Send or its CloseRequest.
type requestIDClientConn struct {
	connect.StreamingClientConn
	ctx  *streamIDContext
	once sync.Once
}

func (c *requestIDClientConn) Send(msg any) error {
	c.once.Do(c.settle)
	return c.StreamingClientConn.Send(msg)
}

func (c *requestIDClientConn) CloseRequest() error {
	c.once.Do(c.settle)
	return c.StreamingClientConn.CloseRequest()
}

// settle keeps the id set on the request headers when it is valid, as
// clientUnaryRequestID does; otherwise it sends the stream's.
func (c *requestIDClientConn) settle() {
	h := c.RequestHeader()
	if id := h.Get(RequestIDHeader); validRequestID(id) {
		c.ctx.id.Store(&id)
	}
	h[RequestIDHeader] = []string{*c.ctx.id.Load()}
}

func (requestIDInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		id := serverRequestID(conn.RequestHeader().Get(RequestIDHeader))
		// Response headers go out with the first message or the error, both
		// after this point.
		conn.ResponseHeader().Set(RequestIDHeader, id)
		return next(&requestIDContext{Context: ctx, id: id}, conn)
	}
}

// serverRequestID keeps the caller's id when it is valid.
func serverRequestID(incoming string) string {
	if validRequestID(incoming) {
		return incoming
	}
	return newRequestID()
}

// clientRequestID prefers the id set on the request, then the id of the call
// being served, and returns ctx carrying the id it chose.
func clientRequestID(ctx context.Context, onRequest string) (context.Context, string) {
	inCtx := RequestIDFrom(ctx)
	id := onRequest
	switch {
	case validRequestID(onRequest):
	case inCtx != "":
		return ctx, inCtx
	default:
		id = newRequestID()
	}
	if id == inCtx {
		return ctx, id
	}
	return &requestIDContext{Context: ctx, id: id}, id
}

// validRequestID accepts 1 to 128 bytes of a charset that is safe in headers,
// log lines and URLs.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '/', c == '+', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns a random (version 4) UUID. Its 122 random bits come
// from math/rand/v2's global generator, which is the runtime's per-thread
// ChaCha8 stream seeded from the OS: unpredictable enough for an id (it is
// not a secret), unique with overwhelming probability, and free of the
// system call and locking that crypto/rand may cost on every call.
func newRequestID() string {
	return formatUUIDv4(rand.Uint64(), rand.Uint64())
}

// formatUUIDv4 returns the UUID of the 128 bits hi and lo, with its version
// set to 4 and its variant to RFC 9562's, in the canonical form
// xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx. It is straight-line code: a
// loop over the 16 bytes with a branch per dash cost about 700
// instructions a call, this about a tenth of that.
func formatUUIDv4(hi, lo uint64) string {
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 9562 variant
	var h [32]byte
	binary.BigEndian.PutUint64(h[0:], hex8(uint32(hi>>32)))
	binary.BigEndian.PutUint64(h[8:], hex8(uint32(hi)))
	binary.BigEndian.PutUint64(h[16:], hex8(uint32(lo>>32)))
	binary.BigEndian.PutUint64(h[24:], hex8(uint32(lo)))
	var b [36]byte
	copy(b[0:8], h[0:8])
	copy(b[9:13], h[8:12])
	copy(b[14:18], h[12:16])
	copy(b[19:23], h[16:20])
	copy(b[24:36], h[20:32])
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	return string(b[:])
}

// hex8 returns the 8 lowercase hex digits of x, one per byte, the most
// significant digit in the most significant byte. It spreads x's nibbles
// one per byte, then adds '0' to each, and 'a'-'0'-10 more to those of 10
// or more (the bytes that adding 6 carries into their bit 4).
func hex8(x uint32) uint64 {
	const ones = 0x0101010101010101
	v := uint64(x)
	v = (v | v<<16) & 0x0000ffff0000ffff
	v = (v | v<<8) & 0x00ff00ff00ff00ff
	v = (v | v<<4) & 0x0f0f0f0f0f0f0f0f
	letters := (v + 6*ones) >> 4 & ones
	return v + '0'*ones + letters*('a'-'0'-10)
}
