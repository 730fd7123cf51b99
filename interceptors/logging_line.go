package interceptors

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/authn"
	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/logline"
	"github.com/connectkit/connectkit/internal/msgctx"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
)

// callLine is what one RPC line says.
type callLine struct {
	spec           connect.Spec
	peer           connect.Peer
	requestID      string
	start          time.Time
	err            error
	stream         bool
	sent, received int64
}

// maxLineAttrs is enough for every attribute of a line, so that the
// attributes live on the stack.
const maxLineAttrs = 20

func (l *logging) logCall(ctx context.Context, c callLine) {
	code := codeOf(c.err)
	level := levelOf(code)
	pe := panicOf(c.err)
	if pe != nil {
		level = slog.LevelError
	} else if (code == 0 || c.stream && (code == connect.CodeCanceled && ctx.Err() != nil ||
		code == connect.CodeDeadlineExceeded && deadlinePassed(ctx))) && l.cfg.isQuiet(c.spec.Procedure) {
		// A client ends a quiet stream (a health Watch, reflection's
		// stream) by cancelling it, as grpc-go's health checking and
		// grpcurl do, or by its deadline (buf curl --timeout): neither is
		// the server's failure. A deadline set inside the chain
		// (KIT_STREAM_TIMEOUT) or a handler's own DeadlineExceeded is, and
		// so is a Canceled while the context Logging got is live: the
		// handler's own (a context of its own cancelled), not the
		// client's. net/http cancels a request's context before it closes
		// its body on an HTTP/2 RST_STREAM, so a handler that sees the
		// reset finds ctx done.
		level = slog.LevelDebug
	} else if code == connect.CodeDeadlineExceeded && !c.spec.IsClient && callerDeadlineSpent(ctx) {
		// The caller's own deadline ran out (in the handler, or in a
		// call it made downstream with that deadline): the budget the
		// caller chose, not the server's failure, as go-grpc-middleware's
		// DefaultServerCodeToLevel logs it. A deadline set inside the
		// chain (kit's default for a caller that sets none, its cap, a
		// handler's own shorter one) is the server's, and stays at error.
		level = slog.LevelWarn
	}
	if !l.logger.Enabled(ctx, level) {
		return
	}
	var v httpVersion
	if !c.spec.IsClient {
		v = lineHTTPVersion(ctx)
	}
	protocol := callProtocol(&c.peer)
	h, shared := l.prefixes.handler(c.spec, protocol, v)
	now := time.Now() // the line's time, and the end of its duration
	line := logline.RPC{
		Time: now, Level: level,
		Peer: c.peer.Addr, Code: codeString(code), Duration: now.Sub(c.start),
		Stream: c.stream, Sent: c.sent, Received: c.received,
		RequestID: c.requestID,
	}
	if !c.spec.IsClient {
		line.Principal = principalOf(ctx)
	}
	if traceID, spanID, ok := traceIDs(ctx); ok {
		line.TraceID, line.SpanID = traceID, spanID
	}
	// kit's handler takes a line without an error as it is, without a
	// record (BENCHMARKS.md 1.33); it needs the shared attributes to be
	// its own.
	if shared && c.err == nil {
		if lh, ok := h.(logline.Handler); ok && lh.HandleRPC(line) {
			return
		}
	}
	var buf [maxLineAttrs]slog.Attr
	attrs := buf[:0]
	if !shared {
		attrs = appendShared(attrs, c.spec, protocol, v)
	}
	attrs = line.AppendAttrs(attrs)
	attrs = appendError(attrs, c.err, pe)
	emit(ctx, h, level, now, logline.Message, attrs)
}

// deadlinePassed reports whether ctx, the call's context as Logging got
// it, has a deadline that has passed: the caller's, which connect set
// before the chain, and not one set further in. It reads the clock rather
// than ctx.Err(): a read deadline set at the same instant (kit's, on a
// Receive) may end the call before ctx's timer has fired.
func deadlinePassed(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// callerDeadlineSlack is how long before the caller's deadline a
// DeadlineExceeded still counts as the caller's (see
// [callerDeadlineSpent]): a downstream call made with the propagated
// deadline may end that much early, its timeout sent in whole
// milliseconds (Connect-Timeout-Ms, truncated) and its server's timer
// starting later.
const callerDeadlineSlack = 5 * time.Millisecond

// callerDeadlineSpent says whether ctx, a call's as Logging got it, has
// a deadline, the caller's, that has passed or is within
// callerDeadlineSlack of passing.
func callerDeadlineSpent(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < callerDeadlineSlack
}

func (l *logging) logMessage(ctx context.Context, info *msgctx.Info, requestID string, start time.Time, err error) {
	if err == nil && l.cfg.quietMessages {
		return
	}
	code := codeOf(err)
	level := levelOf(code)
	var outcome msgctx.Outcome
	if info.Operation == msgctx.Process {
		outcome = info.Outcome(err)
		level = outcomeLevel(outcome)
	} else if err == nil {
		// A message is logged at info where it is handled; its successful
		// publish is a debug line, as in Watermill, which saves every
		// publish formatting a line nobody reads at info (BENCHMARKS.md).
		level = slog.LevelDebug
	}
	pe := panicOf(err)
	if pe != nil {
		level = slog.LevelError
	}
	if !l.logger.Enabled(ctx, level) {
		return
	}
	now := time.Now()
	var buf [maxLineAttrs]slog.Attr
	attrs := append(buf[:0],
		slog.String("kind", string(info.Operation)),
		slog.String("system", info.System),
		slog.String("topic", info.Topic),
	)
	if info.Subscription != "" {
		attrs = append(attrs, slog.String("subscription", info.Subscription))
	}
	attrs = append(attrs,
		slog.String("message_type", info.MessageType),
		slog.String("message_id", info.MessageID),
	)
	if info.Operation == msgctx.Process {
		attrs = append(attrs, slog.Int("attempt", info.Attempt), slog.String("outcome", string(outcome)))
	}
	attrs = append(attrs,
		slog.String("code", codeString(code)),
		slog.Duration("duration", now.Sub(start)),
	)
	attrs = appendCommon(ctx, attrs, requestID, err, pe)
	emit(ctx, l.logger.Handler(), level, now, "message", attrs)
}

// emit writes a line of time t that the caller checked the logger wants. It
// skips slog.Logger.LogAttrs, which spends more time finding its caller's
// program counter (for AddSource) than formatting the line: the caller here
// would be this package, which tells a reader nothing.
func emit(ctx context.Context, h slog.Handler, level slog.Level, t time.Time, msg string, attrs []slog.Attr) {
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r) // as slog.Logger does, ignore the handler's error
}

// appendCommon appends the attributes every line ends with.
func appendCommon(ctx context.Context, attrs []slog.Attr, requestID string, err error, pe *panicError) []slog.Attr {
	if requestID != "" {
		attrs = append(attrs, slog.String("request_id", requestID))
	}
	if traceID, spanID, ok := traceIDs(ctx); ok {
		attrs = append(attrs, slog.String("trace_id", traceID), slog.String("span_id", spanID))
	}
	return appendError(attrs, err, pe)
}

// appendError appends the attributes of a line's error and panic, if any:
// error, then reason and domain when the error carries a
// google.rpc.ErrorInfo (Kratos' errors.New(code, reason, message)).
func appendError(attrs []slog.Attr, err error, pe *panicError) []slog.Attr {
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		if info := errorInfoOf(err); info != nil {
			if r := info.GetReason(); r != "" {
				attrs = append(attrs, slog.String("reason", r))
			}
			if d := info.GetDomain(); d != "" {
				attrs = append(attrs, slog.String("domain", d))
			}
		}
	}
	if pe != nil {
		attrs = append(attrs, slog.String("panic", pe.value), slog.String("stack", pe.stack))
	}
	return attrs
}

func (l *logging) logPayload(ctx context.Context, spec connect.Spec, requestID, direction string, msg any) {
	l.logger.LogAttrs(ctx, slog.LevelDebug, "payload",
		slog.String("procedure", spec.Procedure),
		slog.String("direction", direction),
		slog.String("request_id", requestID),
		slog.Any("payload", payload{msg: msg}),
	)
}

// outcomeLevel is the level of a delivery's line.
func outcomeLevel(o msgctx.Outcome) slog.Level {
	switch o {
	case msgctx.Ack:
		return slog.LevelInfo
	case msgctx.Retry:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// traceIDs returns the hex trace and span ids of the span in ctx, in one
// allocation.
func traceIDs(ctx context.Context) (traceID, spanID string, ok bool) {
	if c, isLog := ctx.(*logContext); isLog && c.noSpan.Load() {
		return "", "", false
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", "", false
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	var b [2*len(tid) + 2*len(sid)]byte
	hex.Encode(b[:2*len(tid)], tid[:])
	hex.Encode(b[2*len(tid):], sid[:])
	s := string(b[:])
	return s[:2*len(tid)], s[2*len(tid):], true
}

// principalOf returns the principal of the caller that the server's
// authentication put in ctx ([authn.GetInfo]), when its information has
// a method Principal() string, or "".
func principalOf(ctx context.Context) string {
	if p, ok := authn.GetInfo(ctx).(interface{ Principal() string }); ok {
		return p.Principal()
	}
	return ""
}

// errorInfoOf returns the first google.rpc.ErrorInfo among the details of
// the *connect.Error in err's chain, or nil. It decodes the detail's bytes
// itself, so that it needs no type registry and decodes no other detail.
func errorInfoOf(err error) *errdetails.ErrorInfo {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return nil
	}
	for _, d := range ce.Details() {
		if d.Type() != errorInfoName {
			continue
		}
		info := &errdetails.ErrorInfo{}
		if proto.Unmarshal(d.Bytes(), info) == nil {
			return info
		}
	}
	return nil
}

// errorInfoName is the full name of google.rpc.ErrorInfo.
var errorInfoName = string((*errdetails.ErrorInfo)(nil).ProtoReflect().Descriptor().FullName())

// panicOf returns the recovered panic in err's chain, if any.
func panicOf(err error) *panicError {
	if err == nil {
		return nil
	}
	var pe *panicError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}
