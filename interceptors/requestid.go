package interceptors

import (
	"context"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/connctx"
	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/connectkit/connectkit/internal/requestid"
)

// RequestIDHeader is the header that carries a call's request id, in both
// directions: "X-Request-Id".
const RequestIDHeader = requestid.Header

// RequestID returns an interceptor that gives every call a request id.
//
// On a server, the id is the caller's X-Request-Id header when it is valid
// (1 to 128 bytes of letters, digits and -_.:/+=@), otherwise, for a pubsub
// delivery, its message's id when valid (so a message from a producer that
// sets no X-Request-Id logs one id on every attempt), otherwise a new
// random UUID; it is echoed in the X-Request-Id response header (also on errors;
// not for a pubsub delivery, which has no caller to read it) and is
// available to the handler and inner interceptors from
// [RequestIDFrom].
//
// On a client, the id sent in X-Request-Id is, in order: the one already set
// on the request (for a client or bidi stream, on its RequestHeader before
// the first Send), the one of the call being served ([RequestIDFrom] the
// context), or, for a pubsub publish, its message's id when valid, which
// it then does not send (the delivery takes its message's id), or a new
// one. So a request id follows a request from service to service, and a
// message published outside any call logs one id, its own, from its
// publish to each of its deliveries.
func RequestID() connect.Interceptor {
	return requestIDInterceptor{}
}

// requestIDBeforeLogging returns [RequestID] for a chain in which
// [Logging] comes right after it, whose served unary calls' contexts it
// then allocates with room for Logging's (servedContext). In another
// order it serves calls as RequestID does, with 80 bytes more of them.
func requestIDBeforeLogging() connect.Interceptor {
	return requestIDInterceptor{withLog: true}
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

// servedContext is a served unary call's request id context with, in the
// same allocation, the context that [Logging] makes for the call when it
// gets this one as RequestID passed it on, as in [Default]'s chain, where
// Logging comes right after RequestID: one allocation of 128 bytes where
// the two took 48 and 80 bytes in two (BENCHMARKS.md 1.39). Its Value is
// the request id context's: log answers Logging's key only as the context
// Logging passes on, whose parent this is.
type servedContext struct {
	requestIDContext
	log logContext
	// taken is set by the Logging that took log: only one may, and a
	// chain in which another piece calls the rest of it twice with this
	// context (a retry) gets a context of its own the second time.
	taken atomic.Bool
	// version is the HTTP version of the call's connection, which
	// RequestID read from the connection's State that it looks up for
	// the echoed id, or 0: Logging's line takes it from here rather than
	// walk the context for the State again (httpVersionFrom, ~170
	// instructions a call, BENCHMARKS.md 36). It fits in the padding.
	version httpVersion
}

// takeLogContext returns ctx's spare logContext for Logging, when ctx is a
// servedContext whose spare no Logging took yet, or nil.
func takeLogContext(ctx context.Context) *logContext {
	if s, ok := ctx.(*servedContext); ok && s.taken.CompareAndSwap(false, true) {
		return &s.log
	}
	return nil
}

type requestIDInterceptor struct {
	// withLog is set by [Default] when its chain has Logging too: served
	// unary calls then get a servedContext, with room for Logging's.
	withLog bool
}

func (r requestIDInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		spec := req.Spec()
		if spec.IsClient {
			return next(clientUnaryRequestID(ctx, req), req)
		}
		peer := req.Peer()
		if info := msgctx.ForRequestOf(ctx, req, &spec, &peer); info != nil {
			// A delivery: its response goes nowhere.
			return next(deliveryRequestID(ctx, req, info), req)
		}
		// kit's server may have echoed the id of a call over HTTP/1.x,
		// gRPC's included (connect serves unary gRPC over HTTP/1.1), and
		// of a unary gRPC call over HTTP/2.
		cc, c, echoed := serverUnaryRequestID(ctx, req, r.withLog, peer.Protocol == connect.ProtocolGRPC)
		resp, err := next(cc, req)
		if echoed == echoedInHeader || echoed == echoedUnlessError && err == nil {
			return alreadyEchoed(resp, err)
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
	ctx, id, send := clientRequestID(ctx, req, header.Get(h, RequestIDHeader))
	if send {
		h[RequestIDHeader] = []string{id}
	} else {
		delete(h, RequestIDHeader) // an invalid one
	}
	return ctx
}

// deliveryRequestID returns the context of a delivery's id: its
// X-Request-Id when valid, which pubsub's publishers set when published
// under a call, otherwise the id its message's id gives (published outside
// any call, or by a producer of another kind), so that its attempts log
// one id.
func deliveryRequestID(ctx context.Context, req connect.AnyRequest, info *msgctx.Info) *requestIDContext {
	id := header.Get(req.Header(), RequestIDHeader)
	if !requestid.Valid(id) {
		id = messageRequestID(info.MessageID)
	}
	return &requestIDContext{Context: ctx, id: id}
}

// messageRequestID is the request id a message's id gives: the message id
// itself when it is a valid request id, else one made from it (a message
// id over 128 bytes, as natsjs makes for a long topic's messages from
// producers of another kind), so that every attempt, and the publish,
// logs the same.
func messageRequestID(messageID string) string {
	switch {
	case requestid.Valid(messageID):
		return messageID
	case messageID != "":
		return requestid.Of(messageID)
	}
	return requestid.New()
}

// echoed says what kit's server did with a served unary call's id.
type echoed uint8

const (
	// notEchoed: the interceptor echoes the id.
	notEchoed echoed = iota
	// echoedInHeader: kit's server wrote the id into the call's HTTP
	// response header, over HTTP/1.x (connctx.State.EchoRequestID).
	echoedInHeader
	// echoedUnlessError: kit's server wrote the id into the response
	// header of a unary gRPC call over HTTP/2 (connctx.StreamEcho), where
	// an error still carries it in its metadata, which connect sends as
	// trailers (or in a Trailers-Only response's header), as it did
	// before kit echoed it: kit's writer then drops its own.
	echoedUnlessError
)

// serverUnaryRequestID returns the context of a call's id, to pass on,
// with its request id context, and whether kit's server already wrote the
// id into the call's HTTP response header.
// With withLog, the context is a servedContext, with room for Logging's.
//
// A gRPC call's is looked for first among those kit echoed over HTTP/2
// (connctx.StreamEcho), whose connection's version is HTTP/2.0: found
// there, the call's context is not walked for its connection's State
// (~150 instructions a call, BENCHMARKS.md 45).
func serverUnaryRequestID(ctx context.Context, req connect.AnyRequest, withLog, grpc bool) (context.Context, *requestIDContext, echoed) {
	h := req.Header()
	var (
		st      *connctx.State
		id      string
		ok      bool
		how     = notEchoed
		version httpVersion
	)
	if grpc {
		if id, ok = connctx.StreamEchoed(h); ok {
			how, version = echoedUnlessError, 20
		}
	}
	if !ok {
		st = connctx.FromContext(ctx)
		if id, ok = st.EchoedRequestID(h); ok {
			how = echoedInHeader
		}
		if st != nil {
			version = httpVersion(st.Version.Load())
		}
	}
	var c *requestIDContext
	var cc context.Context
	if withLog {
		s := &servedContext{version: version}
		c, cc = &s.requestIDContext, s
	} else {
		c = &requestIDContext{}
		cc = c
	}
	c.Context = ctx
	if !ok {
		id = requestid.Server(header.Get(h, RequestIDHeader))
		c.header[0] = id
	}
	c.id = id
	return cc, c, how
}

// alreadyEchoed keeps the id that kit's server wrote into the HTTP response
// header the only one: connect would add those the handler set on its
// response or its error.
func alreadyEchoed(resp connect.AnyResponse, err error) (connect.AnyResponse, error) {
	if err != nil {
		return resp, withErrorMeta(err, RequestIDHeader, "")
	}
	if resp != nil {
		// connect calls Header itself, which makes the map anyway.
		if own := resp.Header(); own[RequestIDHeader] != nil {
			delete(own, RequestIDHeader)
		}
	}
	return resp, nil
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
			id = requestid.New()
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
	if id := h.Get(RequestIDHeader); requestid.Valid(id) {
		c.ctx.id.Store(&id)
	}
	h[RequestIDHeader] = []string{*c.ctx.id.Load()}
}

func (requestIDInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		h := conn.RequestHeader()
		id, echoed := connctx.EchoedRequestID(ctx, h)
		if !echoed {
			id = requestid.Server(header.Get(h, RequestIDHeader))
			// Response headers go out with the first message or the
			// error, both after this point.
			conn.ResponseHeader().Set(RequestIDHeader, id)
		}
		return next(&requestIDContext{Context: ctx, id: id}, conn)
	}
}

// clientRequestID prefers the id set on the request, then the id of the call
// being served, and returns ctx carrying the id it chose, and whether the
// request is to carry it in X-Request-Id.
//
// A publish with neither takes the id its message's id gives
// (messageRequestID), and sends none: a delivery without an X-Request-Id
// takes the same (see deliveryRequestID), so the header would only repeat
// it, and each header costs every message it travels with
// (encoded by the client, scanned by the server, parsed by the consumer:
// BENCHMARKS.md section 3).
func clientRequestID(ctx context.Context, req connect.AnyRequest, onRequest string) (context.Context, string, bool) {
	inCtx := RequestIDFrom(ctx)
	id := onRequest
	switch {
	case requestid.Valid(onRequest):
	case inCtx != "":
		return ctx, inCtx, true
	default:
		if info := msgctx.ForRequest(ctx, req); info != nil && info.MessageID != "" {
			id := messageRequestID(info.MessageID)
			return &requestIDContext{Context: ctx, id: id}, id, false
		}
		id = requestid.New()
	}
	if id == inCtx {
		return ctx, id, true
	}
	return &requestIDContext{Context: ctx, id: id}, id, true
}
