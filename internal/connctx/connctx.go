// Package connctx holds what package interceptors and package kit keep per
// HTTP connection, in the connection's context (http.Server.ConnContext):
// one context value for both, so that every lookup of another key in a
// request's context walks one node fewer.
package connctx

import (
	"context"
	"crypto/tls"
	"net/http"
	"reflect"
	"sync/atomic"
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
	// TLS is the connection when it is a TLS one, set before its
	// handshake; its ConnectionState is complete once requests arrive.
	TLS *tls.Conn

	// serving is the identity (the map's address) of the request header of
	// the request an HTTP/1.x connection is serving, and response is that
	// request's response header: see [State.Serve]. serving is atomic
	// because a request's context, and so its State, may be passed to
	// other goroutines; response is read only after serving matched, by
	// the request's own goroutine.
	serving  atomic.Uintptr
	response http.Header
}

// Serve records that the connection serves the request whose header is
// req, and whose response header is resp, until [State.Served]. Only the
// goroutine that serves an HTTP/1.x connection's requests, one at a time,
// may call it: HTTP/2 serves requests side by side.
//
// It lets the RequestID interceptor add its response header straight to
// resp. Through connect, an interceptor can only add one to a response
// header of the call's own, which connect makes (a map of about 400 bytes,
// the largest of the chain's allocations on a unary call) only to copy its
// entries to resp.
func (s *State) Serve(req, resp http.Header) {
	s.response = resp
	s.serving.Store(mapAddr(req))
}

// Served ends what [State.Serve] began.
func (s *State) Served() {
	s.serving.Store(0)
	s.response = nil
}

// ResponseHeader returns the response header of the request whose header
// is req, if ctx's connection is serving it (see [State.Serve]), or nil.
func ResponseHeader(ctx context.Context, req http.Header) http.Header {
	s := FromContext(ctx)
	if s == nil || req == nil || s.serving.Load() != mapAddr(req) {
		return nil
	}
	return s.response
}

// mapAddr is the address of h's map: two headers are the same map when
// their addresses are equal.
func mapAddr(h http.Header) uintptr {
	if h == nil {
		return 0
	}
	return reflect.ValueOf(h).Pointer()
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
