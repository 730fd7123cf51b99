// Package connctx holds what package interceptors and package kit keep per
// HTTP connection, in the connection's context (http.Server.ConnContext):
// one context value for both, so that every lookup of another key in a
// request's context walks one node fewer.
package connctx

import (
	"context"
	"crypto/tls"
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
