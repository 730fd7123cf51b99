// Package logline holds an RPC's access line as package interceptors'
// Logging hands it to kit's log handler: its values, not a [slog.Record],
// so that the handler can write the line's keys as constants and queue it
// without the record's attributes (BENCHMARKS.md 1.33). Any other handler
// gets the record that [RPC.AppendAttrs] gives, as before.
package logline

import (
	"log/slog"
	"time"
)

// RPC is one RPC line: the record of message "rpc" at Level and Time whose
// attributes, after those its handler already carries (kind, procedure,
// stream, protocol, http), are those of [RPC.AppendAttrs], in that order.
type RPC struct {
	Time  time.Time
	Level slog.Level
	Peer  string
	// Principal, when not empty, is principal: who called, as the
	// server's authentication named the caller.
	Principal string
	Code      string
	Duration  time.Duration
	// Stream lines also have sent and received.
	Stream         bool
	Sent, Received int64
	// RequestID, when not empty, is request_id.
	RequestID string
	// TraceID and SpanID, when TraceID is not empty, are trace_id and
	// span_id.
	TraceID, SpanID string
}

// Message is an RPC line's message.
const Message = "rpc"

// AppendAttrs appends the line's attributes to attrs: peer, principal
// (when set), code, duration, sent and received (streams), request_id
// (when set), trace_id and span_id (when set).
func (l *RPC) AppendAttrs(attrs []slog.Attr) []slog.Attr {
	attrs = append(attrs, slog.String("peer", l.Peer))
	if l.Principal != "" {
		attrs = append(attrs, slog.String("principal", l.Principal))
	}
	attrs = append(attrs,
		slog.String("code", l.Code),
		slog.Duration("duration", l.Duration),
	)
	if l.Stream {
		attrs = append(attrs, slog.Int64("sent", l.Sent), slog.Int64("received", l.Received))
	}
	if l.RequestID != "" {
		attrs = append(attrs, slog.String("request_id", l.RequestID))
	}
	if l.TraceID != "" {
		attrs = append(attrs, slog.String("trace_id", l.TraceID), slog.String("span_id", l.SpanID))
	}
	return attrs
}

// Handler is a [slog.Handler] that can log an RPC line without a record.
// Only kit's own handler implements it; Logging gives every other handler
// the record.
type Handler interface {
	// HandleRPC logs l as Handle would log its record, or does nothing
	// and reports false, and the caller then calls Handle. The caller
	// checked that the handler is enabled at l.Level.
	HandleRPC(l RPC) bool
}
