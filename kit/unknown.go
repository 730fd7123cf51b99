package kit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
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

// unrouted answers r, which no REST route matches.
func (u *unknownPaths) unrouted(w http.ResponseWriter, r *http.Request) {
	if h := u.root.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	unimplemented(w, r, u.calls.of(unknownService), false)
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
