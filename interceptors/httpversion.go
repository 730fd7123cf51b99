package interceptors

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/connectkit/connectkit/internal/connctx"
)

// HTTPVersion wraps an HTTP handler so that the [Logging] interceptor can log
// the HTTP version of each call it serves ("HTTP/1.1", "HTTP/2.0"). connect
// does not show the *http.Request to interceptors, so the version has to be
// put in the request's context before connect gets it. Without this wrapper
// the log lines simply have no "http" field.
//
// On an http.Server whose ConnContext is [ConnContext], it records the
// version in the connection's context at no cost; otherwise it copies each
// request to give it a new context (two allocations, about 1 KiB).
func HTTPVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := connctx.FromContext(r.Context()); c != nil {
			c.SetVersion(r)
			next.ServeHTTP(w, r)
			return
		}
		v := httpVersion(r.ProtoMajor*10 + r.ProtoMinor)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), httpVersionKey{}, v)))
	})
}

// ConnContext is a function for http.Server.ConnContext that lets
// [HTTPVersion] record each connection's HTTP version in the connection's
// context instead of copying every request, and keeps a TLS connection
// for kit.TLSFrom. Compose it with your own ConnContext, if any, by
// calling it from there.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	ctx = connctx.NewContext(ctx)
	st := connctx.FromContext(ctx)
	st.Conn = c
	if tc, ok := c.(*tls.Conn); ok {
		st.TLS = tc
	}
	return ctx
}

type httpVersionKey struct{}

// httpVersion is major*10+minor: a small integer, which a context value holds
// without allocating.
type httpVersion uint8

func (v httpVersion) String() string {
	switch v {
	case 10:
		return "HTTP/1.0"
	case 11:
		return "HTTP/1.1"
	case 20:
		return "HTTP/2.0"
	case 30:
		return "HTTP/3.0"
	default:
		return ""
	}
}

// lineHTTPVersion is httpVersionFrom for ctx, a served call's context
// from Logging, taken from the [servedContext] that Logging's context is
// in when RequestID, right before it, found the version: one walk of the
// context fewer a call.
func lineHTTPVersion(ctx context.Context) httpVersion {
	if lc, ok := ctx.(*logContext); ok {
		if s, ok := lc.Context.(*servedContext); ok && s.version != 0 {
			return s.version
		}
	}
	return httpVersionFrom(ctx)
}

// httpVersionFrom returns the HTTP version of the call ctx belongs to, or 0
// when [HTTPVersion] did not wrap the handler.
func httpVersionFrom(ctx context.Context) httpVersion {
	// The connection's first: a context has the key only where it has no
	// connection's State, and the key's lookup walks the whole context.
	if c := connctx.FromContext(ctx); c != nil {
		if v := c.Version.Load(); v != 0 {
			return httpVersion(v)
		}
	}
	v, _ := ctx.Value(httpVersionKey{}).(httpVersion)
	return v
}
