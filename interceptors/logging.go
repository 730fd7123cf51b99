package interceptors

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/msgctx"
)

// Logging returns an interceptor that writes one line to logger per call,
// when the call ends (for streams too). Its level is set by the outcome: info
// for success, warn for the caller's errors (InvalidArgument, NotFound,
// Canceled, …), error for the server's (Unknown, DeadlineExceeded,
// Unimplemented, Internal, Unavailable, DataLoss) and for panics that
// [Recovery] turned into errors. A server's DeadlineExceeded logs at warn
// when the deadline the call's context carried into Logging, the caller's,
// has passed: the caller's budget ran out, as go-grpc-middleware's
// DefaultServerCodeToLevel logs it; one set further in (kit's default and
// cap, a handler's own) is the server's. A nil logger discards everything.
//
// An RPC line has the message "rpc" and the attributes kind (server or
// client), procedure, stream (unary, client_stream, server_stream,
// bidi_stream), protocol (connect, grpc, grpcweb, or rest for a call that
// came in over a REST route of kit.Server's), peer, http (the HTTP
// version, on servers wrapped by [HTTPVersion]), principal (on a server,
// when the caller's information in the context, connectrpc.com/authn's
// GetInfo, has a method Principal() string, as kit.WithAuth's may; keep
// tokens out of it), code ("ok" or the connect code), duration, sent and
// received (message counts, streams only),
// request_id (from [RequestID]), trace_id and span_id (from the span in the
// context, so [Tracing] must wrap Logging), error, and panic and stack.
//
// A message publish or delivery that package pubsub presents as a call is
// logged as a "message" line instead: kind (publish or process), system,
// topic, subscription, message_type, message_id, attempt, outcome (ack,
// retry or dead_letter, for deliveries), code, duration, request_id,
// trace_id, span_id and error. Deliveries are logged at info when acked, warn
// when retried, error when dead-lettered; publishes at debug when they
// succeed and at their code's level when they fail.
//
// Handlers get a logger carrying the call's procedure, request id and trace
// ids from [LoggerFrom]. Payloads are never logged unless [WithPayloads] is
// given.
func Logging(logger *slog.Logger, opts ...LoggingOption) connect.Interceptor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &logging{logger: logger, prefixes: newLinePrefixes(logger.Handler())}
	for _, opt := range opts {
		opt.applyToLogging(&l.cfg)
	}
	return l
}

// WithPayloads makes [Logging] log every request and response message at
// debug level ("payload" lines), as JSON, without the fields marked
// debug_redact in their proto definition. Off by default; it costs nothing
// while the logger's level is above debug.
func WithPayloads() LoggingOption {
	return loggingOption(func(c *loggingConfig) { c.payloads = true })
}

// WithoutMessageSuccessLogs makes [Logging] skip the lines of messages
// published or handled successfully, keeping only their failures. RPC lines
// are not affected. By default every message is logged.
func WithoutMessageSuccessLogs() LoggingOption {
	return loggingOption(func(c *loggingConfig) { c.quietMessages = true })
}

// WithQuietProcedures makes [Logging] log the successful calls of the
// procedures that start with one of prefixes at debug instead of info. It is
// meant for health probes and reflection, which would otherwise fill the logs
// with a line every few seconds. So too their streams that the client cancels,
// the usual end of a health Watch (grpc-go's client-side health checking) and
// of reflection's stream (grpcurl), which would otherwise log at warn, and
// those whose caller's deadline passes (buf curl --timeout), which would log
// at error. The DeadlineExceeded of a deadline set inside the chain (kit's
// KIT_STREAM_TIMEOUT), or a handler's own, is the server's and logs at error,
// and a Canceled that the handler returns while the caller's context is live
// (of a context of its own) at warn, as their other failures log as usual.
// For example,
// WithQuietProcedures("/grpc.health.v1.Health/").
func WithQuietProcedures(prefixes ...string) LoggingOption {
	return loggingOption(func(c *loggingConfig) { c.quiet = append(c.quiet, prefixes...) })
}

// LoggerFrom returns the logger of the call ctx belongs to. It is the [Logging]
// interceptor's logger with the call's procedure, request_id, trace_id and
// span_id (for messages: topic, subscription, message_id and attempt). Outside
// a call logged by Logging it returns a logger that discards everything,
// never a global one.
func LoggerFrom(ctx context.Context) *slog.Logger {
	if c, ok := ctx.Value(logKey{}).(*logContext); ok {
		return c.scopedLogger()
	}
	return slog.New(slog.DiscardHandler)
}

type loggingConfig struct {
	payloads      bool
	quietMessages bool
	quiet         []string // procedure prefixes whose successes log at debug
}

func (c *loggingConfig) isQuiet(procedure string) bool {
	for _, prefix := range c.quiet {
		if strings.HasPrefix(procedure, prefix) {
			return true
		}
	}
	return false
}

type logging struct {
	logger   *slog.Logger
	prefixes *linePrefixes
	cfg      loggingConfig
}

type logKey struct{}

// logContext is a served call's context: it carries what [LoggerFrom] needs
// and tells [Recovery] that Logging will log a panic. It costs one
// allocation of 80 bytes (the request id, which its parent has, would make
// it 96); the request-scoped logger is built only if asked for.
type logContext struct {
	context.Context
	base      *slog.Logger
	procedure string
	info      *msgctx.Info

	once sync.Once
	// noSpan is set when this context was found to hold no valid span
	// context: [Metrics] looks for one at a call's end, for its exemplar,
	// and when it runs right inside Logging, as in [Default], the context
	// it gets is this one, so that the line's [traceIDs] need not walk the
	// whole context again (~280 instructions a call, BENCHMARKS.md 1.38).
	// A context's span never changes. Atomic: a handler may pass the
	// context to calls of its own on other goroutines.
	noSpan atomic.Bool
	scoped *slog.Logger
}

// noteNoSpan records that ctx holds no valid span context, when ctx is a
// served call's context from Logging.
func noteNoSpan(ctx context.Context) {
	if c, ok := ctx.(*logContext); ok {
		c.noSpan.Store(true)
	}
}

func (c *logContext) Value(key any) any {
	if key == (logKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *logContext) scopedLogger() *slog.Logger {
	c.once.Do(func() {
		attrs := make([]any, 0, 8)
		if c.info != nil {
			attrs = append(attrs, slog.String("topic", c.info.Topic))
			if c.info.Subscription != "" {
				attrs = append(attrs, slog.String("subscription", c.info.Subscription))
			}
			attrs = append(attrs, slog.String("message_id", c.info.MessageID))
			if c.info.Attempt > 0 {
				attrs = append(attrs, slog.Int("attempt", c.info.Attempt))
			}
		} else {
			attrs = append(attrs, slog.String("procedure", c.procedure))
		}
		if id := RequestIDFrom(c.Context); id != "" {
			attrs = append(attrs, slog.String("request_id", id))
		}
		if traceID, spanID, ok := traceIDs(c.Context); ok {
			attrs = append(attrs, slog.String("trace_id", traceID), slog.String("span_id", spanID))
		}
		c.scoped = c.base.With(attrs...)
	})
	return c.scoped
}

// loggedByLogging reports whether a [Logging] interceptor serving this call
// of procedure wraps the caller, and so will log the call's outcome. (The
// procedure tells it from a call served further up the same context, as
// when a handler serves another request in process.)
func loggedByLogging(ctx context.Context, procedure string) bool {
	c, ok := ctx.Value(logKey{}).(*logContext)
	return ok && c.procedure == procedure
}

func (l *logging) serverContext(ctx context.Context, procedure string, info *msgctx.Info) *logContext {
	if c := takeLogContext(ctx); c != nil {
		// RequestID's, allocated with its own (servedContext).
		c.Context, c.base, c.procedure, c.info = ctx, l.logger, procedure, info
		return c
	}
	return &logContext{
		Context:   ctx,
		base:      l.logger,
		procedure: procedure,
		info:      info,
	}
}

func (l *logging) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		spec, peer := req.Spec(), req.Peer()
		if info := msgctx.ForRequestOf(ctx, req, &spec, &peer); info != nil {
			return l.unaryMessage(ctx, info, req, spec, next)
		}
		c := l.beginUnary(ctx, req, spec, peer)
		resp, err := next(c.ctx, req)
		l.endUnary(&c, resp, err)
		return resp, err
	}
}

// unaryCall is a unary call being logged. The work before and after the
// call lives in methods of its own so that the closure's stack frame, live
// while the handler runs, stays small: net/http runs each HTTP/2 request on
// a new goroutine with a small stack, and the deeper the chain's frames, the
// likelier that stack has to grow (be copied) on every call.
type unaryCall struct {
	ctx       context.Context
	spec      connect.Spec // read before the call: a connect client given
	peer      connect.Peer // a handler's own request rewrites both
	requestID string
	start     time.Time
	debug     bool
}

func (l *logging) beginUnary(ctx context.Context, req connect.AnyRequest, spec connect.Spec, peer connect.Peer) unaryCall {
	c := unaryCall{ctx: ctx, spec: spec, peer: peer, requestID: RequestIDFrom(ctx), start: time.Now()}
	if !spec.IsClient {
		c.ctx = l.serverContext(ctx, spec.Procedure, nil)
	}
	c.debug = l.cfg.payloads && l.logger.Enabled(ctx, slog.LevelDebug)
	if c.debug {
		l.logPayload(c.ctx, spec, c.requestID, "request", req.Any())
	}
	return c
}

func (l *logging) endUnary(c *unaryCall, resp connect.AnyResponse, err error) {
	if c.debug && err == nil && resp != nil {
		l.logPayload(c.ctx, c.spec, c.requestID, "response", resp.Any())
	}
	l.logCall(c.ctx, callLine{spec: c.spec, peer: c.peer, requestID: c.requestID, start: c.start, err: err})
}

func (l *logging) unaryMessage(ctx context.Context, info *msgctx.Info, req connect.AnyRequest, spec connect.Spec, next connect.UnaryFunc) (connect.AnyResponse, error) {
	start := info.Start // a delivery's: pubsub read the clock as the chain began
	if start.IsZero() {
		start = time.Now()
	}
	requestID := RequestIDFrom(ctx)
	if !spec.IsClient {
		ctx = l.serverContext(ctx, spec.Procedure, info)
	}
	if l.cfg.payloads && l.logger.Enabled(ctx, slog.LevelDebug) {
		l.logPayload(ctx, spec, requestID, "message", req.Any())
	}
	resp, err := next(ctx, req)
	l.logMessage(ctx, info, requestID, start, err)
	return resp, err
}

func (l *logging) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		spec := conn.Spec()
		lc, requestID := l.serverContext(ctx, spec.Procedure, nil), RequestIDFrom(ctx)
		s := &handlerStream{StreamingHandlerConn: conn}
		if l.cfg.payloads && l.logger.Enabled(ctx, slog.LevelDebug) {
			s.onSend = func(msg any) { l.logPayload(lc, spec, requestID, "sent", msg) }
			s.onReceive = func(msg any) { l.logPayload(lc, spec, requestID, "received", msg) }
		}
		err := next(lc, s)
		l.logCall(lc, callLine{
			spec: spec, peer: conn.Peer(), requestID: requestID, start: start, err: err,
			stream: true, sent: s.sent.Load(), received: s.received.Load(),
		})
		return err
	}
}

func (l *logging) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		start := time.Now()
		conn := next(ctx, spec)
		// The request id is read when it is logged: a stream's is settled
		// when its request headers go out, which may set the caller's.
		s := observeClientStream(ctx, conn, func(s *clientStream, err error) {
			l.logCall(ctx, callLine{
				spec: spec, peer: conn.Peer(), requestID: RequestIDFrom(ctx), start: start, err: err,
				stream: true, sent: s.sent.Load(), received: s.received.Load(),
			})
		})
		if l.cfg.payloads && l.logger.Enabled(ctx, slog.LevelDebug) {
			s.onSend = func(msg any) { l.logPayload(ctx, spec, RequestIDFrom(ctx), "sent", msg) }
			s.onReceive = func(msg any) { l.logPayload(ctx, spec, RequestIDFrom(ctx), "received", msg) }
		}
		return s
	}
}
