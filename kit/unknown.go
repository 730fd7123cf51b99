package kit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// unknownPaths answers the requests that no mounted handler's path matches.
// A REST route of a mounted service takes its calls (see [restRoutes]),
// then a path mounted as "/" takes the rest; otherwise an RPC gets an
// Unimplemented error in its own protocol, naming the procedure, where
// net/http's plain "404 page not found" would leave a gRPC client with
// "unexpected HTTP status code 404" and no procedure (grpc-go servers
// answer so too). Anything else gets the plain 404.
type unknownPaths struct {
	rest  restRoutes
	root  atomic.Pointer[http.Handler] // mounted as "/"
	calls unknownCalls
}

func (u *unknownPaths) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !u.rest.serve(w, r) {
		u.unrouted(w, r)
	}
}

// unrouted answers r, which no REST route matches. Where services have
// REST routes and no handler is mounted at "/", a request that is no RPC
// (see [restLike]) gets the 404 of a REST API, google.rpc.Status JSON
// naming its method and path, as grpc-gateway answers any path its routes
// do not match, where net/http's was plain text ("404 page not found"),
// which a REST client could not read as the other errors.
func (u *unknownPaths) unrouted(w http.ResponseWriter, r *http.Request) {
	if h := u.root.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	if u.rest.transcoder.Load() != nil && restLike(r) {
		restNotFound(w, fmt.Sprintf("no route matches %s %s", quoteBounded(r.Method), quoteBounded(r.URL.Path)))
		return
	}
	unimplemented(w, r, u.calls.of(unknownService), false)
}

// serveUnclean answers r, whose path is not clean (see [cleanPath]: a
// "//", a "." or ".." segment), and reports whether it did, where services
// have REST routes and no handler is mounted at "/": a REST request (see
// [restLike]) whose clean path the ServeMux gives kit's "/" (no other
// handler is mounted there) gets 404, google.rpc.Status JSON that names
// the path and its clean form, as grpc-gateway answers such a path
// (its router splits the path at each slash: "//v1/a" matches no route).
// The ServeMux, which mux is, redirected it to the clean path, 307 with
// an HTML body, and Kratos' router (gorilla/mux) answers it 301, after
// which a client sends a POST or PATCH again as a GET. Any other request
// is the ServeMux's to redirect, as before: a POST of JSON, which may be
// a Connect call; a path of a handler mounted beside the services.
func (u *unknownPaths) serveUnclean(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) bool {
	if r.Method == http.MethodConnect || u.root.Load() != nil || u.rest.transcoder.Load() == nil || !restLike(r) {
		return false
	}
	clean := cleanPath(r.URL.Path)
	c := r.WithContext(r.Context())
	cu := *r.URL
	cu.Path, cu.RawPath = clean, ""
	c.URL = &cu
	if _, pattern := mux.Handler(c); pattern != "/" {
		return false
	}
	restNotFound(w, fmt.Sprintf("no route matches %s %s: the path has an empty segment (\"//\"), a \".\" or a \"..\"; its clean form is %s",
		quoteBounded(r.Method), quoteBounded(r.URL.Path), quoteBounded(clean)))
	return true
}

// cleanPath returns p as the ServeMux cleans a request's path before it
// routes it (net/http's cleanPath, which is unexported): path.Clean's
// result, rooted, with p's trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// uncleanPath says whether the ServeMux would clean p, and redirect its
// request: a "//", a "." or a ".." segment.
func uncleanPath(p string) bool {
	return (strings.Contains(p, "//") || strings.Contains(p, "/.")) && cleanPath(p) != p
}

// restLike says whether r, to a path nothing serves, is no RPC: not
// gRPC's or gRPC-Web's, nor what [unimplemented] takes for a Connect call.
// A POST of JSON or protobuf without Connect's header or content type,
// which a unary Connect call may be, is one only at a path a procedure
// could have (see [procedurePath]; the clean one, where the ServeMux
// redirects): kit mounts a service at "/<service>/", so `POST
// /v1/things` or `/v1/things:create` is a REST request, whose 404 is a
// google.rpc.Status.
func restLike(r *http.Request) bool {
	kind := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type")))
	if strings.HasPrefix(kind, "application/grpc") {
		return false
	}
	if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" &&
		!strings.HasPrefix(kind, "application/connect+") && !procedurePath(cleanPath(r.URL.Path)) {
		return true
	}
	return !connectRequest(r, kind)
}

// procedurePath says whether p is the path of a procedure, as connect
// names them: "/<service>/<method>", the service's full name with a
// package (at least one dot) and the method's name.
func procedurePath(p string) bool {
	service, method, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return ok && strings.HasPrefix(p, "/") && strings.Contains(service, ".") &&
		protoreflect.FullName(service).IsValid() && protoreflect.Name(method).IsValid()
}

// restNotFound answers 404 NotFound, as google.rpc.Status JSON whose
// message is msg, with X-Content-Type-Options: nosniff, as http.Error
// writes its plain-text answer.
func restNotFound(w http.ResponseWriter, msg string) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(statusJSON(connect.CodeNotFound, msg))
}

// unknownService is the grpc_service label of the calls that no mounted
// service's path matches: their paths are the client's to choose.
const unknownService = "unknown"

// unknownCalls counts the calls answered Unimplemented, by the mounted
// service whose method is unknown, or [unknownService]: the interceptors,
// which count every other call, never see them, and during a rolling
// deploy that removes a method they are the calls that fail.
type unknownCalls struct{ vec *prometheus.CounterVec }

func newUnknownCalls(reg prometheus.Registerer) (unknownCalls, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kit_unknown_procedure_calls_total",
		Help: `Calls answered Unimplemented because nothing serves their procedure, by the mounted service whose method is unknown, or "unknown" for a path no service has.`,
	}, []string{"grpc_service"})
	if err := reg.Register(vec); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return unknownCalls{}, fmt.Errorf("kit: metrics registry: %w", err)
		}
		existing, ok := already.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return unknownCalls{}, fmt.Errorf("kit: metrics registry: %w", err)
		}
		vec = existing // another server's, on a registry they share
	}
	c := unknownCalls{vec: vec}
	c.of(unknownService) // at 0, so that increase() sees the first one
	return c, nil
}

// of returns the counter of service's calls, made at 0 if it was not.
func (c unknownCalls) of(service string) prometheus.Counter {
	return c.vec.WithLabelValues(service)
}

// unimplemented answers a call to a procedure nothing serves, and counts
// it in calls. rpc says that the path is a mounted service's, so the
// request is a call whatever its headers; otherwise only a request that
// looks like one gets an RPC error (and is counted).
func unimplemented(w http.ResponseWriter, r *http.Request, calls prometheus.Counter, rpc bool) {
	msg := fmt.Sprintf("unknown procedure %s", r.URL.Path)
	ct := r.Header.Get("Content-Type")
	kind := strings.ToLower(strings.TrimSpace(ct)) // as connect compares it
	switch {
	case strings.HasPrefix(kind, "application/grpc"): // gRPC and gRPC-Web
		calls.Inc()
		// A trailers-only response: the status in the headers, no body.
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Grpc-Status", "12") // UNIMPLEMENTED
		w.Header().Set("Grpc-Message", grpcPercentEncode(msg))
		w.WriteHeader(http.StatusOK)
	case rpc || connectRequest(r, kind):
		calls.Inc()
		body, _ := json.Marshal(map[string]string{"code": "unimplemented", "message": msg})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write(body)
	default:
		http.NotFound(w, r)
	}
}

// connectRequest says whether r looks like a Connect call: its protocol
// header, a streaming content type, a GET with ?connect=v1, or a POST of
// JSON or protobuf (the header is optional for unary calls). ct is its
// content type, lower-cased.
func connectRequest(r *http.Request, ct string) bool {
	if r.Header.Get("Connect-Protocol-Version") != "" || strings.HasPrefix(ct, "application/connect+") {
		return true
	}
	if r.Method == http.MethodPost {
		mediaType, _, _ := strings.Cut(ct, ";")
		switch strings.TrimSpace(mediaType) {
		case "application/json", "application/proto":
			return true
		}
	}
	return r.Method == http.MethodGet && r.URL.Query().Get("connect") == "v1"
}

// grpcPercentEncode encodes a grpc-message header value as the gRPC
// protocol asks: bytes outside printable ASCII, and '%', as %XX.
func grpcPercentEncode(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
