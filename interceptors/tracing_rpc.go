package interceptors

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// The RPC spans below are connectrpc.com/otelconnect's (v0.12, with
// WithTrustRemote, WithoutMetrics and WithServerPeerAttributes): the same
// names, kinds, attributes and statuses, checked span for span by
// TestTracingMatchesOtelconnect. They are written here rather than taken
// from otelconnect because otelconnect does its per-call work whether or not the span is sampled: with tracing on and
// sampling off, it cost 17 allocations and about half the default chain's
// CPU per call (BENCHMARKS.md, section 2), where a span that records
// nothing needs only its context. Here a call whose span is not recording
// pays for extracting the caller's context, the non-recording span and, on
// clients, injecting the context into the request headers. Options that
// only otelconnect has still reach it: see [WithOtelconnectOptions].

// statusCodeOK is rpc.response.status_code for a call that succeeded.
const statusCodeOK = "OK"

func (t *tracing) rpcUnary(ctx context.Context, req connect.AnyRequest, next connect.UnaryFunc, start *startOptions) (connect.AnyResponse, error) {
	spec := req.Spec()
	carrier := headerCarrier(req.Header())
	opts := start.get(spec, req.Peer())
	if !spec.IsClient {
		ctx, opts = t.remote(ctx, carrier, opts)
	}
	ctx, span := t.tracer.Start(ctx, spanName(spec), opts...)
	defer span.End()
	if spec.IsClient {
		t.propagator.Inject(ctx, carrier)
	}
	resp, err := next(ctx, req)
	if span.IsRecording() {
		endUnaryRPCSpan(span, req, err)
	}
	return resp, err
}

// endUnaryRPCSpan is endRPCSpan for a unary call: taking the request
// rather than what endRPCSpan needs of it keeps rpcUnary's frame as small
// across next as it was before servers recorded their peer.
func endUnaryRPCSpan(span trace.Span, req connect.AnyRequest, err error) {
	endRPCSpan(span, req.Spec().IsClient, req.Peer().Addr, err)
}

func (t *tracing) rpcStreamingHandler(ctx context.Context, conn connect.StreamingHandlerConn, next connect.StreamingHandlerFunc, start *startOptions) error {
	spec := conn.Spec()
	ctx, opts := t.remote(ctx, headerCarrier(conn.RequestHeader()), start.get(spec, conn.Peer()))
	ctx, span := t.tracer.Start(ctx, spanName(spec), opts...)
	defer span.End()
	err := next(ctx, conn)
	if span.IsRecording() {
		endRPCSpan(span, false, conn.Peer().Addr, err)
	}
	return err
}

// rpcStreamingClient starts the span of a client stream, which ends when the
// caller closes the response or the call's context is done; its status is
// the stream's first error other than io.EOF.
func (t *tracing) rpcStreamingClient(ctx context.Context, spec connect.Spec, next connect.StreamingClientFunc) connect.StreamingClientConn {
	ctx, span := t.tracer.Start(ctx, spanName(spec), trace.WithSpanKind(trace.SpanKindClient))
	conn := next(ctx, spec)
	t.propagator.Inject(ctx, headerCarrier(conn.RequestHeader()))
	if span.IsRecording() {
		span.SetAttributes(requestAttributes(nil, spec, conn.Peer())...)
	}
	return observeClientStream(ctx, conn, func(_ *clientStream, err error) {
		if span.IsRecording() {
			endRPCSpan(span, true, "", err)
		}
		span.End()
	})
}

// remote puts the caller's trace context in ctx, the parent of a server's
// span; or, for a public endpoint, returns opts with a link to the caller's
// span, leaving ctx without the caller's context and baggage.
func (t *tracing) remote(ctx context.Context, carrier headerCarrier, opts []trace.SpanStartOption) (context.Context, []trace.SpanStartOption) {
	if !t.public {
		return extractRemote(ctx, t.propagator, carrier), opts
	}
	sc := trace.SpanContextFromContext(t.propagator.Extract(context.Background(), carrier))
	if !sc.IsValid() {
		return ctx, opts
	}
	linked := make([]trace.SpanStartOption, len(opts), len(opts)+1)
	copy(linked, opts)
	return ctx, append(linked, trace.WithLinks(trace.Link{SpanContext: sc}))
}

// startOptions keeps the span start options of the calls that one wrapped
// function serves: the span kind and the request's attributes, which are
// the same on every call of a procedure over a protocol (and, on clients,
// to one server). connect wraps each procedure's handler and client
// separately, so one entry per protocol holds them all; a function that
// serves several procedures is still traced right, at the cost of making
// the options again when the procedure changes.
type startOptions [len(protocols)]atomic.Pointer[startEntry] // by protocolIndex

type startEntry struct {
	procedure, protocol, addr string
	opts                      []trace.SpanStartOption
}

func (s *startOptions) get(spec connect.Spec, peer connect.Peer) []trace.SpanStartOption {
	addr := ""
	if spec.IsClient { // a server's peer is the client: set at the span's end
		addr = peer.Addr
	}
	slot := &s[protocolIndex(peer.Protocol)]
	if e := slot.Load(); e != nil && e.procedure == spec.Procedure && e.protocol == peer.Protocol && e.addr == addr {
		return e.opts
	}
	kind := trace.SpanKindServer
	if spec.IsClient {
		kind = trace.SpanKindClient
	}
	e := &startEntry{procedure: spec.Procedure, protocol: peer.Protocol, addr: addr, opts: []trace.SpanStartOption{
		trace.WithSpanKind(kind), trace.WithAttributes(requestAttributes(nil, spec, peer)...),
	}}
	slot.Store(e)
	return e.opts
}

// spanName is otelconnect's: the procedure without its leading slash.
func spanName(spec connect.Spec) string { return strings.TrimLeft(spec.Procedure, "/") }

// requestAttributes appends what a span knows when the call starts: the RPC
// system and method and, on clients, the server's address.
func requestAttributes(attrs []attribute.KeyValue, spec connect.Spec, peer connect.Peer) []attribute.KeyValue {
	attrs = append(attrs,
		semconv.RPCSystemNameKey.String(rpcSystem(peer.Protocol)),
		semconv.RPCMethodKey.String(spanName(spec)),
	)
	if !spec.IsClient {
		return attrs
	}
	return addressAttributes(attrs, peer.Addr, semconv.ServerAddressKey, semconv.ServerPortKey)
}

// addressAttributes appends address as the attributes addressKey and
// portKey (host and port) or, when it has no numeric port, as addressKey
// alone; nothing when address is "".
func addressAttributes(attrs []attribute.KeyValue, address string, addressKey, portKey attribute.Key) []attribute.KeyValue {
	if address == "" {
		return attrs
	}
	if host, port, err := net.SplitHostPort(address); err == nil {
		if p, err := strconv.Atoi(port); err == nil {
			return append(attrs, addressKey.String(host), portKey.Int(p))
		}
	}
	return append(attrs, addressKey.String(address))
}

// rpcSystem is rpc.system.name for a connect protocol name.
func rpcSystem(protocol string) string {
	switch protocol {
	case connect.ProtocolGRPC, connect.ProtocolGRPCWeb:
		return "grpc"
	case connect.ProtocolConnect:
		return "connectrpc"
	}
	return protocol
}

// endRPCSpan records a call's outcome on its span: rpc.response.status_code
// (and error.type) in gRPC's names, and an error status for every client
// error but only for server errors on servers, as otelconnect does. On
// servers it also records the caller's address, peer (connect's
// Peer.Addr), as network.peer.address and network.peer.port, as
// otelconnect's WithServerPeerAttributes does: the attributes wait for
// the span to be known sampled, and a call that is not pays nothing for
// them.
func endRPCSpan(span trace.Span, client bool, peer string, err error) {
	var buf [5]attribute.KeyValue
	attrs := buf[:0]
	if !client {
		attrs = addressAttributes(attrs, peer, semconv.NetworkPeerAddressKey, semconv.NetworkPeerPortKey)
	}
	switch {
	case err == nil:
		span.SetAttributes(append(attrs, semconv.RPCResponseStatusCodeKey.String(statusCodeOK))...)
		return
	case connect.IsNotModifiedError(err):
		span.SetAttributes(append(attrs, semconv.RPCResponseStatusCodeKey.String(statusCodeOK),
			semconv.HTTPResponseStatusCodeKey.Int(http.StatusNotModified))...)
		return
	}
	code := codeOf(err) // a stream's handler may return ctx.Err() as is
	name := strings.ToUpper(code.String())
	span.SetAttributes(append(attrs, semconv.RPCResponseStatusCodeKey.String(name), semconv.ErrorTypeKey.String(name))...)
	if !client && !serverSpanError(code) {
		return
	}
	msg := err.Error()
	if connectErr := new(connect.Error); errors.As(err, &connectErr) {
		msg = connectErr.Message()
	}
	span.SetStatus(codes.Error, msg)
}

// serverSpanError says whether an error with code marks a server span as
// failed: the codes that mean the server failed, not the caller (an error
// that is not a connect error is Unknown, unless it is a context's, as the
// metrics and the log count it).
func serverSpanError(code connect.Code) bool {
	switch code {
	case connect.CodeUnknown, connect.CodeDeadlineExceeded, connect.CodeUnimplemented,
		connect.CodeInternal, connect.CodeUnavailable, connect.CodeDataLoss:
		return true
	}
	return false
}
