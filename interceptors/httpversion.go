package interceptors

import (
	"context"
	"net/http"
)

// HTTPVersion wraps an HTTP handler so that the [Logging] interceptor can log
// the HTTP version of each call it serves ("HTTP/1.1", "HTTP/2.0"): connect
// does not show the *http.Request to interceptors, so the version has to be
// put in the request's context before connect gets it. Without this wrapper
// the log lines simply have no "http" field. kit.Server installs it.
func HTTPVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := httpVersion(r.ProtoMajor*10 + r.ProtoMinor)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), httpVersionKey{}, v)))
	})
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

// httpVersionFrom returns the HTTP version of the call ctx belongs to, or ""
// when [HTTPVersion] did not wrap the handler.
func httpVersionFrom(ctx context.Context) string {
	v, _ := ctx.Value(httpVersionKey{}).(httpVersion)
	return v.String()
}
