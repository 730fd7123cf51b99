package kit

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/connectkit/connectkit/internal/connctx"
	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/respstatus"
)

// routes finds the handler of each request on the main listener: a call to
// a mounted service goes straight to that service's handler, anything else
// to the ServeMux, which holds every pattern, services' included.
//
// Written by hand because the ServeMux's general routing (escaping and
// cleaning the path, then walking its tree of hosts, methods and segments)
// costs about 5 600 instructions per call, ~6 % of a Connect JSON call
// through bare connect-go (BENCHMARKS.md 1.23). A service is mounted as a
// one-segment subtree ("/pkg.Service/"), so the handler of a call to it is
// one map lookup away from the path's last slash. The shortcut is taken
// only where the ServeMux would choose the same handler: for a path it
// would neither unescape nor clean, and for a service mounted at its clean
// path under which no other pattern is mounted (patterns compared
// unescaped, as the ServeMux reads them). A pattern with a host, a method or a wildcard,
// which the ServeMux ranks by rules of its own, turns the shortcut off.
type routes struct {
	mux *http.ServeMux

	// services holds the services' handlers by path ("/pkg.Service/"),
	// copied on every change; nil when the shortcut is off.
	services atomic.Pointer[map[string]http.Handler]

	// echoIDs is set, before serving, when kit's chain gives calls
	// request ids (interceptors.RequestID): an HTTP/1.x call to a mounted
	// service then gets its id here (see connctx.State.EchoRequestID).
	echoIDs bool
	// rejected observes the calls that connect answered without the
	// chain (see rejectedCalls); set with echoIDs, nil without it.
	rejected *rejectedCalls
	// answers holds the [respstatus.Writer]s of the HTTP/2 requests that
	// serve serves through one.
	answers sync.Pool

	// unclean answers a request to a path that the ServeMux would clean
	// and redirect, and reports whether it did (see
	// [unknownPaths.serveUnclean]); set before serving.
	unclean func(http.ResponseWriter, *http.Request) bool

	mu     sync.Mutex // held while mounting
	others []string   // the other patterns mounted, each a path
	off    bool       // a pattern that is not a plain path was mounted
}

func newRoutes() *routes {
	rt := &routes{mux: http.NewServeMux()}
	rt.answers.New = func() any { return new(respstatus.Writer) }
	rt.services.Store(&map[string]http.Handler{})
	return rt
}

// handle mounts h at pattern, which names a service's path when service is
// true. It panics as [http.ServeMux.Handle] does on a pattern that is
// invalid or taken.
func (rt *routes) handle(pattern string, h http.Handler, service bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.mux.Handle(pattern, h)
	if rt.off {
		return
	}
	if !strings.HasPrefix(pattern, "/") || strings.Contains(pattern, "{") {
		rt.off = true // a host ("example.com/"), a method ("GET /x") or a wildcard
		rt.services.Store(nil)
		return
	}
	// The ServeMux matches a pattern's segments unescaped: compare those
	// ("/a%2ES/Ping" is a.S's Ping).
	unescaped := pathUnescape(pattern)
	// The shortcut serves a service's path only in its clean form, which
	// the ServeMux serves without cleaning or redirecting a request's path
	// first ("//a.S/" it redirects): a service mounted otherwise is one of
	// the other patterns.
	service = service && unescaped == pattern && strings.Count(pattern, "/") == 2
	services := make(map[string]http.Handler, len(*rt.services.Load())+1)
	for path, sh := range *rt.services.Load() {
		if service || !strings.HasPrefix(unescaped, path) { // the ServeMux prefers the longer pattern
			services[path] = sh
		}
	}
	switch {
	case !service:
		rt.others = append(rt.others, unescaped)
	case !slices.ContainsFunc(rt.others, func(p string) bool { return strings.HasPrefix(p, pattern) }):
		services[pattern] = h
	}
	rt.services.Store(&services)
}

// pathUnescape unescapes a pattern's path as the ServeMux does its
// segments' (net/http's pattern.go): one that does not unescape is kept as
// it is.
func pathUnescape(path string) string {
	u, err := url.PathUnescape(path)
	if err != nil {
		return path
	}
	return u
}

func (rt *routes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.serve(w, r, http1Conn(r))
}

// serve serves r, whose connection's State is c: nil without one, and
// may be nil for HTTP/2, where it is not used.
//
// With rejected set, a call to a mounted procedure that its handler
// answered without kit's chain is observed there (see [rejectedCalls]).
// A call of a mounted service that may be a Connect one (see
// [connectCall]) is served through a [respstatus.Writer], which records
// its status and the start of an error's body: connect writes a Connect
// unary error's code there, and a stream's in its last message, in no
// header; so is such a call of a mounted procedure that the ServeMux
// routes. An HTTP/1.x connection has one for the calls kit routes itself,
// in turn; any other call takes one from a pool. The
// handler writes through the ResponseWriter that its Reset returns, one a
// call, which its Release ends: a write that a handler's goroutine makes
// after the handler returned fails there, where the reused writer would
// have put it in the next call's response.
func (rt *routes) serve(w http.ResponseWriter, r *http.Request, c *connctx.State) {
	h, pattern := rt.service(r)
	if h == nil {
		if rt.unclean != nil && uncleanPath(r.URL.Path) && rt.unclean(w, r) {
			return
		}
		if rt.rejected == nil {
			rt.mux.ServeHTTP(w, r)
			return
		}
		// A Connect call of a mounted procedure that the ServeMux routes
		// (a pattern with a host, a method or a wildcard is mounted) is
		// recorded too, for its code; the ServeMux's other requests are
		// no calls, and pay the lookup alone.
		if ok, stream := connectCall(r); ok && rt.rejected.isProcedure(r.URL.Path) {
			rt.serveRecorded(rt.mux, w, r, stream)
			return
		}
		rt.mux.ServeHTTP(w, r)
		if !answeredByChain(w.Header()) {
			rt.rejected.observe(w.Header(), r, nil)
		}
		return
	}
	r.Pattern = pattern // as the ServeMux sets it
	if r.ProtoMajor == 1 && c != nil && rt.echoIDs {
		spare := c.EchoRequestID(r.Header, w.Header())
		var answer *respstatus.Writer
		if ok, stream := connectCall(r); ok {
			answer = c.Answer()
			h.ServeHTTP(answer.ResetIn(w, stream, spare), r)
			answer.Release()
		} else {
			h.ServeHTTP(w, r)
		}
		if !c.Served() {
			rt.rejected.observe(w.Header(), r, answer)
		}
		return
	}
	if rt.rejected == nil {
		h.ServeHTTP(w, r)
		return
	}
	ok, stream := connectCall(r)
	if !ok {
		h.ServeHTTP(w, r)
		if !answeredByChain(w.Header()) {
			rt.rejected.observe(w.Header(), r, nil)
		}
		return
	}
	rt.serveRecorded(h, w, r, stream)
}

// serveRecorded serves r, a call that may be a Connect one, with h
// through a [respstatus.Writer] from the pool, and observes it if the
// chain did not answer it.
func (rt *routes) serveRecorded(h http.Handler, w http.ResponseWriter, r *http.Request, stream bool) {
	answer := rt.answers.Get().(*respstatus.Writer)
	h.ServeHTTP(answer.Reset(w, stream), r)
	answer.Release()
	if !answeredByChain(w.Header()) {
		rt.rejected.observe(w.Header(), r, answer)
	}
	rt.answers.Put(answer)
}

// connectCall says whether r may be a Connect call, whose error connect
// writes in the status and body alone: a GET, or a POST whose content type
// is not gRPC's or gRPC-Web's; and whether it is a Connect stream's
// ("application/connect+…"). Content types are compared as connect
// compares them, without regard to case, after an exact comparison of
// "application/", which every client but an odd one sends in lower case:
// strings.EqualFold cost ~160 instructions a Connect JSON call, ~195 a
// gRPC one, and a loop over the whole prefix ~200 (BENCHMARKS.md 18).
func connectCall(r *http.Request) (ok, stream bool) {
	switch r.Method {
	case http.MethodGet:
		return true, false
	case http.MethodPost:
		const app = "application/"
		ct := header.Get(r.Header, "Content-Type")
		if !strings.HasPrefix(ct, app) && !hasPrefixFold(ct, app) {
			return true, false // connect serves none of them: its 415
		}
		rest := ct[len(app):]
		if hasPrefixFold(rest, "grpc") {
			return false, false
		}
		return true, hasPrefixFold(rest, "connect+")
	}
	return false, false
}

// hasPrefixFold is strings.HasPrefix without regard to ASCII case, for a
// prefix in lower case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	s = s[:len(prefix)]
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// service returns the handler and pattern of the mounted service r calls,
// or nil when the ServeMux is to route r: a path it would unescape, clean
// or redirect, or one no shortcut covers.
func (rt *routes) service(r *http.Request) (http.Handler, string) {
	services := rt.services.Load()
	if services == nil || r.URL.RawPath != "" {
		return nil, ""
	}
	path := r.URL.Path
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return nil, ""
	}
	if name := path[i+1:]; name == "." || name == ".." {
		return nil, ""
	}
	pattern := path[:i+1]
	return (*services)[pattern], pattern
}
