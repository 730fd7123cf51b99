// Package connctx holds what package interceptors and package kit keep per
// HTTP connection, in the connection's context (http.Server.ConnContext):
// one context value for both, so that every lookup of another key in a
// request's context walks one node fewer.
package connctx

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/requestid"
	"github.com/connectkit/connectkit/internal/respstatus"
)

// State is one connection's.
type State struct {
	// Version is the connection's HTTP version, major*10+minor, which
	// interceptors.HTTPVersion records from its requests.
	Version atomic.Uint32
	// StackMark is where kit last left the stack of the goroutine that
	// serves an HTTP/1.x connection's requests (kit/stack.go); 0 before.
	// Only that goroutine uses it.
	StackMark uintptr
	// StackGrowths is how many of the connection's requests kit grew
	// that goroutine's stack for, which StackMark does not show when a
	// grown stack lands where the last one was (a 16 KiB stack freed by
	// a shrink and taken again). Only that goroutine writes it; tests
	// read it.
	StackGrowths uint32
	// TLS is the connection when it is a TLS one, set before its
	// handshake; its ConnectionState is complete once requests arrive.
	TLS *tls.Conn
	// Conn is the connection as net/http accepted it (the *tls.Conn
	// beneath TLS), set before its first request.
	Conn net.Conn
	// RetireAt is when kit retires the connection (Config.MaxConnectionAge:
	// the first response after it asks the client to go elsewhere); zero
	// for never. Set before its first request, read-only after.
	RetireAt time.Time

	// answer is [State.Answer]'s, nil until it is first asked for.
	answer *respstatus.Writer

	// echoed is the request id of the HTTP/1.x request the connection
	// serves, already in its response header (see [State.EchoRequestID]),
	// or nil. Atomic: the request's handler may run on a goroutine of its
	// own, still running when the connection serves its next request.
	echoed atomic.Pointer[echoed]
}

// Answer returns the connection's [respstatus.Writer], made on the first
// call: kit wraps in it the ResponseWriter of an HTTP/1.x request that may
// be a Connect unary call, to read back the status of one that never
// reached the chain. One for the connection, reused by each request in
// turn, whose handler writes through the small ResponseWriter of its own
// that [respstatus.Writer.Reset] returns (a write after its handler
// returned, which net/http forbids, so fails and never reaches the next
// request's response). Only the goroutine that serves the connection's
// requests may use it.
func (s *State) Answer() *respstatus.Writer {
	if s.answer == nil {
		s.answer = new(respstatus.Writer)
	}
	return s.answer
}

// SetVersion records the HTTP version of a request the connection
// serves (every request of a connection has the same one).
func (s *State) SetVersion(r *http.Request) {
	s.Version.Store(uint32(r.ProtoMajor*10 + r.ProtoMinor))
}

// echoed is a request id that kit's server wrote into an HTTP/1.x
// response's header before the request's handler ran. It holds, in the
// same allocation, the bytes of an id it made and room for the call's
// recording ResponseWriter: one allocation a request where there were
// three (BENCHMARKS.md 36).
type echoed struct {
	// header is the address of the request's header map, compared by
	// identity: an address, not a reference, so that a log line that
	// holds the id (and so the record) does not keep the request's header
	// alive until the line is written.
	header   uintptr
	incoming string    // the request's X-Request-Id as it arrived
	value    [1]string // the id, as the response header's value
	// chained is set when the RequestID interceptor found the record
	// ([EchoedRequestID]): the call reached kit's chain. Atomic for the
	// same reason as State.echoed.
	chained atomic.Bool
	id      [requestid.Len]byte // a new id's bytes, which value[0] holds
	spare   respstatus.Spare
}

// EchoRequestID gives the HTTP/1.x request whose header is req a request
// id (its own X-Request-Id when valid, see [requestid.Server]), writes it
// into resp, the request's response header, and records it until
// [State.Served] for the RequestID interceptor ([EchoedRequestID]). Only
// the goroutine that serves the connection's requests, one at a time, may
// call it, before the request's handler runs.
//
// It spares every unary call its own response header: through connect, an
// interceptor can only add a header to a map of the call's own, which
// costs ~330 bytes on its first entry (the chain's largest allocation on
// a Connect JSON call) and which connect then copies into resp. Written
// here, before the handler runs, because resp is safe to write only from
// this goroutine: a handler such as http.TimeoutHandler runs the call on a
// goroutine of its own while this one may write resp. The id is read from
// the request as it arrived: a handler between kit and the service that
// changes its X-Request-Id changes nothing, and one that copies the
// request (r.Clone) gets the same id (see [EchoedRequestID]).
//
// It returns room for the request's recording ResponseWriter, for
// [respstatus.Writer.ResetIn], allocated with the record.
func (s *State) EchoRequestID(req, resp http.Header) *respstatus.Spare {
	e := &echoed{header: reflect.ValueOf(req).Pointer(), incoming: header.Get(req, requestid.Header)}
	e.value[0] = requestid.ServerIn(e.incoming, &e.id)
	resp[requestid.Header] = e.value[:]
	s.echoed.Store(e)
	return &e.spare
}

// Served ends what [State.EchoRequestID] recorded, and reports whether
// the request reached kit's interceptor chain: whether the RequestID
// interceptor found its id ([EchoedRequestID]). A call that connect
// rejected before its chain (a message that does not decode, an
// unsupported content type) did not.
func (s *State) Served() (chained bool) {
	e := s.echoed.Swap(nil)
	return e != nil && e.chained.Load()
}

// EchoedRequestID returns the request id that kit's server already wrote
// into the response header of the request whose header is req, if ctx's
// connection serves that request (see [State.EchoRequestID]): req is that
// request's header, or a copy of it with the same X-Request-Id (a handler
// between kit and the service that cloned the request). The connection
// serves one request at a time, so any other request under its context is
// one that a handler made while serving it, or a request it served before,
// still running on a goroutine of its own after its handler returned
// (http.TimeoutHandler's, whose response goes nowhere): that one, if its
// X-Request-Id is the current one's, logs the current one's id.
func EchoedRequestID(ctx context.Context, req http.Header) (string, bool) {
	return FromContext(ctx).EchoedRequestID(req)
}

// EchoedRequestID is the package's [EchoedRequestID] for s, the State of
// the request's context, for a caller that has it already; s may be nil.
func (s *State) EchoedRequestID(req http.Header) (string, bool) {
	if s == nil {
		return "", false
	}
	e := s.echoed.Load()
	if e == nil {
		return "", false
	}
	// The record's request was being served when e was loaded (Served
	// drops it), so its header was live then, as req was: two live maps
	// have two addresses, and the heap does not move.
	if e.header != reflect.ValueOf(req).Pointer() && header.Get(req, requestid.Header) != e.incoming {
		return "", false
	}
	e.chained.Store(true)
	return e.value[0], true
}

type key struct{}

// NewContext returns ctx carrying a new State.
func NewContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, key{}, &State{})
}

// FromContext returns the State in ctx, or nil when ctx is not a
// connection's given one by [NewContext].
func FromContext(ctx context.Context) *State {
	s, _ := ctx.Value(key{}).(*State)
	return s
}
