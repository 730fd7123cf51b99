package connctx

import (
	"net/http"
	"sync/atomic"
	"unsafe"

	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/requestid"
)

// StreamEcho is the request id that kit's server wrote into the response
// header of a unary gRPC call over HTTP/2 before its handler ran (see
// [StreamEcho.Echo]), the HTTP/2 counterpart of [State.EchoRequestID]:
// the streams of an HTTP/2 connection run at once, so the record lives in
// an object of the call's own (kit's gRPC writer) rather than in the
// connection's State, and the RequestID interceptor finds it from the
// request's header map, the one thing of the call's own that connect
// hands it ([StreamEchoed]), with no context lookup and no allocation.
//
// Through connect the interceptor could only add the id to the call's own
// response header map, which connect then copies twice: ~736 bytes and 4
// objects a call, 80 % of the default chain's bytes on a gRPC call
// (BENCHMARKS.md 35).
//
// The zero value is ready; a StreamEcho must not be copied or reused
// once given to Echo.
type StreamEcho struct {
	// req is the request's X-Request-Id once Echo ran: req[0] the id, and
	// req[1], beyond the length of the request's slice (req[:1:2]), the
	// mark that tells the slice kit's (streamMark). It must stay the
	// first field: [StreamEchoed] gets the record from &req[0].
	req [2]string
	// resp is the response header's value, a slice of its own (capacity
	// 1) so that a value appended to the response's field is never
	// written over the mark, nor a change to the request's over it.
	resp [1]string
	// chained is set when the RequestID interceptor found the record:
	// the call reached kit's chain. Atomic: a handler between kit and
	// connect may run the call on a goroutine of its own
	// (http.TimeoutHandler's) while kit's writer reads it.
	chained atomic.Bool
	// settled is set once the response header's fate was decided
	// ([StreamEcho.Settle]); only the writer's goroutine uses it.
	settled bool
	echoing bool                // Echo ran
	id      [requestid.Len]byte // a new id's bytes, which req[0] holds
}

// streamMark is the string in a StreamEcho's req[1]: a slice whose hidden
// element has its bytes' address can only be a StreamEcho's (a client's
// header values are strings of their own; net/http's Header.Clone trims
// every value's capacity to its length).
var streamMark = "connctx: kit's X-Request-Id echoed over HTTP/2"

// Echo gives the unary gRPC call over HTTP/2 whose request header is req a
// request id (its X-Request-Id when valid, see [requestid.Server]), writes
// it into resp, the call's response header, before the handler runs, and
// into req, where the RequestID interceptor finds it ([StreamEchoed]): a
// handler sees the call's request id as its X-Request-Id, as
// interceptors.RequestIDFrom gives it. The header kit writes goes out only if the
// call reached the chain (see [StreamEcho.Settle]).
func (e *StreamEcho) Echo(req, resp http.Header) {
	e.resp[0] = requestid.ServerIn(header.Get(req, requestid.Header), &e.id)
	e.req = [2]string{e.resp[0], streamMark}
	e.echoing = true
	req[requestid.Header] = e.req[:1:2]
	resp[requestid.Header] = e.resp[:]
}

// StreamEchoed returns the request id that kit's server echoed for the
// call whose request header is req ([StreamEcho.Echo]), and marks the call
// as one that reached the chain; false when kit echoed none for it (not a
// unary gRPC call over HTTP/2, no RequestID in kit's chain, or a handler
// between kit and connect that replaced the request's X-Request-Id or
// cloned the request: the interceptor then echoes as it does without
// kit's server, and kit's writer sends the interceptor's id alone).
func StreamEchoed(req http.Header) (string, bool) {
	v := req[requestid.Header]
	if len(v) != 1 || cap(v) != 2 {
		return "", false
	}
	if mark := v[:2][1]; len(mark) != len(streamMark) || unsafe.StringData(mark) != unsafe.StringData(streamMark) {
		return "", false
	}
	// v's array is a StreamEcho's req, its first field: unsafe because
	// connect hands the interceptor nothing else of the call's own that
	// could lead to it without a lookup (a context value, a registry).
	e := (*StreamEcho)(unsafe.Pointer(&v[0]))
	e.chained.Store(true)
	return e.resp[0], true
}

// Settle decides, before the response header goes out (or when the
// handler returned without sending it), whether the id that Echo wrote
// stays in h, the response header: it does when the chain found it and
// did not send the id in trailers, as it does on an error (the error's
// metadata, which connect sends as trailers, or in the header of a
// Trailers-Only response, the client seeing one id either way). A call
// that did not reach the chain (connect refused it before any
// interceptor, or a chain without RequestID) carries no X-Request-Id of
// kit's, as before kit's server echoed any over HTTP/2 (one that a
// handler between kit and connect set itself stays). It does nothing
// after its first call or without Echo.
func (e *StreamEcho) Settle(h http.Header) {
	if !e.echoing || e.settled {
		return
	}
	e.settled = true
	chained := e.chained.Load()
	if chained && h[http.TrailerPrefix+requestid.Header] == nil {
		return
	}
	// The chain's own id, if it sent one in the header (a handler
	// between kit and connect cloned the request), follows kit's.
	switch v := h[requestid.Header]; {
	case len(v) == 0 || v[0] != e.resp[0]:
	case !chained && len(v) == 1 && &v[0] != &e.resp[0]:
		// A field that a handler between kit and connect set itself,
		// with the id it read from the request, kit's, and that is
		// the response's only one: a call it answered without
		// connect keeps it, as it did before kit echoed any.
	case len(v) == 1:
		delete(h, requestid.Header)
	default:
		h[requestid.Header] = v[1:]
	}
}
