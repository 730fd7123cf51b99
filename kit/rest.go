package kit

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// restRoutes serves the REST routes that the mounted services declare
// with the google.api.http option on their methods, through
// [connectrpc.com/vanguard]: it turns a REST call into a Connect call of
// the method, in binary protobuf, to the service's mounted handler, and
// its response (or error, as google.rpc.Status JSON) back into REST. The
// call so runs kit's whole chain once, as the method.
//
// Only the requests that no mounted path matches come here (see
// [unknownPaths]): gRPC, gRPC-Web and Connect calls to a mounted service
// never do. Those that match no route go on as if there were none.
type restRoutes struct {
	mu       sync.Mutex // held while mounting
	services []*vanguard.Service
	// maxBody is MaxRequestBytes, the most a REST body may hold; set
	// before the first route is served.
	maxBody int64
	// maxBuffer is the most vanguard holds of one message, a gzipped
	// body's inflated JSON among them (the larger of MaxRequestBytes and
	// MaxResponseBytes, see [restRoutes.add]); set with maxBody.
	maxBuffer int64
	// ignoredBody is ReadHeaderTimeout, the time a body that no route
	// takes has to arrive (see [ignoreBody]); set with maxBody.
	ignoredBody time.Duration
	// transcoder serves the routes; nil until a service with routes is
	// mounted.
	transcoder atomic.Pointer[vanguard.Transcoder]
	// methods are the HTTP methods of the routes, stored before the
	// transcoder that serves them.
	methods atomic.Pointer[routeMethods]
	// rejected observes the calls that connect answered without the
	// chain (see [rejectedCalls.observeREST]); set with the routes',
	// before the first route is served.
	rejected *rejectedCalls
	// sentLength passes a body's Content-Length on to the handler, for
	// [Config.MaxInFlightBytes] (see [sentLengthKey]); set by New.
	sentLength bool
	// logger logs a panic in the transcoding (see [restRoutes.recover]);
	// set by New.
	logger *slog.Logger
}

// add serves the routes of service, whose methods have some (see
// [hasHTTPRules]) and whose calls h answers, h wrapping the service's
// handler in [transcodedBody]; the requests no route matches go to
// unrouted. maxRequest and maxResponse are MaxRequestBytes and
// MaxResponseBytes, ignoredBody ReadHeaderTimeout. It panics, as
// [http.ServeMux.Handle] does on a conflicting pattern, when vanguard
// refuses the routes (a malformed path template, two methods on one
// route).
func (rr *restRoutes) add(service protoreflect.ServiceDescriptor, h http.Handler, maxRequest, maxResponse int64, ignoredBody time.Duration, unrouted http.Handler) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.maxBody, rr.ignoredBody = maxRequest, ignoredBody
	rr.maxBuffer = min(max(maxRequest, maxResponse), math.MaxUint32)
	// One protocol and codec to the handler, without compression: the
	// transcoded call then costs one protobuf encoding and no
	// negotiation. Vanguard buffers each request and response message
	// whole, to transcode it, under one limit: the larger of the two
	// limits, so that a response MaxResponseBytes allows is served (the
	// handler's connect refuses a larger one); serve bounds the body at
	// MaxRequestBytes. A query
	// parameter that names no field of the request is ignored, as
	// grpc-gateway ignores it (a cache buster, "?_=1733561497", or a
	// tracking tag), where vanguard failed the call Internal, HTTP 500.
	svc := vanguard.NewServiceWithSchema(service, h,
		vanguard.WithRESTUnmarshalOptions(vanguard.RESTUnmarshalOptions{DiscardUnknownQueryParams: true}),
		vanguard.WithTargetProtocols(vanguard.ProtocolConnect),
		vanguard.WithTargetCodecs(vanguard.CodecProto),
		vanguard.WithNoTargetCompression(),
		vanguard.WithMaxMessageBufferBytes(uint32(rr.maxBuffer)),
	)
	services := append(rr.services, svc)
	t, err := vanguard.NewTranscoder(services, vanguard.WithUnknownHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unrouted.ServeHTTP(asSent(w, r))
	})),
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			return restJSON{vanguard.NewJSONCodec(res)}
		}),
		vanguard.WithCompression(vanguard.CompressionGzip,
			func() connect.Compressor { return gzip.NewWriter(io.Discard) },
			func() connect.Decompressor { return &restGzip{} }))
	if err != nil {
		panic(fmt.Sprintf("kit: REST routes of %s: %v", service.FullName(), err))
	}
	rr.services = services
	methods := routeMethods{routes: map[string]bool{}, bodies: map[string]bool{}, bodiless: map[string]bool{}, queryNames: map[string]bool{}}
	if old := rr.methods.Load(); old != nil {
		maps.Copy(methods.routes, old.routes)
		maps.Copy(methods.bodies, old.bodies)
		maps.Copy(methods.bodiless, old.bodiless)
		maps.Copy(methods.queryNames, old.queryNames)
		methods.inputs = slices.Clone(old.inputs)
		methods.patches = old.patches
	}
	methods.add(service)
	rr.methods.Store(&methods)
	rr.transcoder.Store(t)
}

// routeMethods are the HTTP methods of the mounted services' routes, as
// their google.api.http options name them ("*": a custom kind, which
// vanguard matches with any method).
type routeMethods struct {
	routes   map[string]bool // the methods of every route
	bodies   map[string]bool // those of the routes that take a body
	bodiless map[string]bool // those of the routes that take none
	// queryNames are the names of the routed requests' fields, true for
	// those whose query parameters vanguard may get wrong (see
	// [addQueryFields]), inputs those requests' messages, each once.
	queryNames map[string]bool
	inputs     []protoreflect.MessageDescriptor
	// patches says that a method's PATCH routes fill its FieldMask from
	// the body (see [patchMask]).
	patches bool
}

// add records the methods of service's routes, and their requests.
func (m *routeMethods) add(service protoreflect.ServiceDescriptor) {
	methods := service.Methods()
	for i := range methods.Len() {
		rules := httpRules(methods.Get(i))
		if rules == nil {
			continue
		}
		m.patches = m.patches || patchMaskOf(methods.Get(i)) != nil
		if in := methods.Get(i).Input(); !slices.ContainsFunc(m.inputs, func(md protoreflect.MessageDescriptor) bool { return md.FullName() == in.FullName() }) {
			m.inputs = append(m.inputs, in)
			addQueryFields(m.queryNames, in)
		}
		for _, r := range rules {
			var method string
			switch p := r.GetPattern().(type) {
			case *annotations.HttpRule_Get:
				method = http.MethodGet
			case *annotations.HttpRule_Put:
				method = http.MethodPut
			case *annotations.HttpRule_Post:
				method = http.MethodPost
			case *annotations.HttpRule_Delete:
				method = http.MethodDelete
			case *annotations.HttpRule_Patch:
				method = http.MethodPatch
			case *annotations.HttpRule_Custom:
				method = p.Custom.GetKind()
			}
			m.routes[method] = true
			if r.GetBody() != "" {
				m.bodies[method] = true
			} else {
				m.bodiless[method] = true
			}
		}
	}
}

// takesBody says whether a route of method may take a body.
func (m *routeMethods) takesBody(method string) bool {
	return m.bodies[method] || m.bodies["*"]
}

// someTakeNone says whether a route of method takes no body, among
// others that take one (see [restRoutes.serveWithoutBody]).
func (m *routeMethods) someTakeNone(method string) bool {
	return m.takesBody(method) && (m.bodiless[method] || m.bodiless["*"])
}

// headAsGet says whether a HEAD is to be served as a GET: no route is
// a HEAD's own.
func (m *routeMethods) headAsGet() bool {
	return !m.routes[http.MethodHead] && !m.routes["*"]
}

// serve serves r if it is a REST call and services have routes, and
// reports whether it did; otherwise the caller answers r.
func (rr *restRoutes) serve(w http.ResponseWriter, r *http.Request) bool {
	t := rr.transcoder.Load()
	if t == nil || !restRequest(r) {
		return false
	}
	methods := rr.methods.Load()
	hasBody := r.Body != nil && r.Body != http.NoBody
	if hasBody && r.ContentLength > 0 && rr.sentLength {
		// Vanguard's request to the handler has no length of its own:
		// the bound on request bytes reserves this one (see [requestBytes]).
		r = r.WithContext(context.WithValue(r.Context(), sentLengthKey{}, r.ContentLength))
	}
	// A body sent with a method that some routes take a body with and
	// others not may reach a route that takes none, which vanguard
	// refuses: the call is then served again without it (see
	// [restRoutes.serveWithoutBody]), from r as it came, whose header
	// vanguard is kept from rewriting.
	var rb *refusableBody
	var before []string
	if hasBody && methods.someTakeNone(r.Method) {
		rb = new(refusableBody)
		before = slices.Collect(maps.Keys(w.Header()))
	}
	c := rr.vanguardRequest(w, r, methods, hasBody, rb)
	rw := &restWriter{ResponseWriter: w, sent: r, capture: rr.rejected != nil, headAsGet: methods.headAsGet()}
	rr.transcode(t, rw, c)
	if rb != nil && rw.held && bodyRefused(rw.errBody) {
		c, rw = rr.serveWithoutBody(t, w, r, methods, before, rb)
	}
	if rw.held {
		rw.release()
	}
	if rr.rejected != nil && rw.status >= http.StatusBadRequest && !answeredByChain(w.Header()) {
		rr.rejected.observeREST(w.Header(), c, r, rw.status, rw.errBody)
	}
	return true
}

// transcode serves c through t, and answers a panic in it (see
// [restRoutes.recover]).
func (rr *restRoutes) transcode(t *vanguard.Transcoder, rw *restWriter, c *http.Request) {
	defer rr.recover(rw, c)
	t.ServeHTTP(rw, c)
}

// recover answers a panic in vanguard's transcoding of c, or in a handler
// it calls that has no recovery of its own (a plain http.Handler mounted
// without kit's chain), as 500 Internal, google.rpc.Status JSON whose
// message says nothing of the panic, and logs it once, at error, with its
// value and stack, as [interceptors.Recovery] answers and logs a
// handler's: left to net/http, the panic closed the HTTP/1.1 connection
// without a response (or reset the HTTP/2 stream) and went to the
// server's error log alone. Vanguard v0.4.0 panicked on query parameters a
// client may send (a repeated google.protobuf.Timestamp, ?times=…, a name
// ending in "."), which kit no longer gives it (see restquery.go and
// [lastElementNamed]). A panic after the response's header was written
// aborts the response (http.ErrAbortHandler), which net/http does not
// log again; http.ErrAbortHandler itself goes on to net/http.
func (rr *restRoutes) recover(rw *restWriter, c *http.Request) {
	p := recover()
	if p == nil {
		return
	}
	if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		panic(p) //nolint:forbidigo // net/http's way to abort a response
	}
	if rr.logger != nil {
		rr.logger.LogAttrs(c.Context(), slog.LevelError, "panic",
			slog.String("method", rw.sent.Method),
			slog.String("path", rw.sent.URL.Path),
			slog.String("protocol", protocolREST),
			slog.String("panic", fmt.Sprint(p)),
			slog.String("stack", string(debug.Stack())))
	}
	if rw.status != 0 && !rw.held {
		panic(http.ErrAbortHandler) //nolint:forbidigo // too late to answer
	}
	// A 500 held back (vanguard's, written as the panic unwound it, for
	// a handler that answered nothing) has sent nothing yet: the
	// answer below replaces it.
	rw.held, rw.errBody = false, nil
	h := rw.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	rw.WriteHeader(http.StatusInternalServerError)
	_, _ = rw.Write([]byte(`{"code":13,"message":"internal error","details":[]}`))
}

// unescapeUnreserved returns path, escaped, with the escapes of unreserved
// characters (letters, digits, "-", ".", "_", "~") unescaped, as RFC 3986
// (6.2.2.2) has a URI normalized: "/v1/%70ing" is "/v1/ping". Vanguard
// compares a route's literal segments with the request's byte for byte,
// in its escaped form, which leaves those characters unescaped; a path
// variable's value is the same either way, vanguard unescaping it.
func unescapeUnreserved(path string) string {
	i := strings.IndexByte(path, '%')
	if i < 0 {
		return path
	}
	b := []byte(path[:i])
	for ; i < len(path); i++ {
		if c := path[i]; c == '%' && i+2 < len(path) && ishex(path[i+1]) && ishex(path[i+2]) {
			if u := unhex(path[i+1])<<4 | unhex(path[i+2]); unreserved(u) {
				b = append(b, u)
				i += 2
				continue
			}
		}
		b = append(b, path[i])
	}
	return string(b)
}

// lastElementNamed returns query, escaped, with a second "." after each
// parameter name that ends in one ("?inner.=1", "?text.=1"): vanguard
// v0.4.0 resolves such a name to its fields but for the empty last one,
// which it leaves nil, and then panics setting it (a nil pointer, or a
// mutable reference to a string), so that net/http closed the connection
// without a response, or reset the HTTP/2 stream, and logged the panic's
// stack. With the second ".", vanguard reads the name as it reads
// "inner..text": an element that names no field of a message, ignored as
// any unknown parameter is, or, after a field that is not a message, 400
// InvalidArgument (see [restClientError]), as grpc-gateway answers
// both.
func lastElementNamed(query string) string {
	var b strings.Builder
	for i, pair := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		key, value, hasValue := strings.Cut(pair, "=")
		b.WriteString(key)
		if name, err := url.QueryUnescape(key); err == nil && strings.HasSuffix(name, ".") {
			b.WriteByte('.')
		}
		if hasValue {
			b.WriteByte('=')
			b.WriteString(value)
		}
	}
	return b.String()
}

// escapedSlash says whether path, escaped, holds a %2F or %2f.
func escapedSlash(path string) bool {
	for i := strings.IndexByte(path, '%'); i >= 0 && i+2 < len(path); {
		if path[i+1] == '2' && (path[i+2] == 'F' || path[i+2] == 'f') {
			return true
		}
		j := strings.IndexByte(path[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// unreserved says whether c is an unreserved character of RFC 3986.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unhex is the value of the hex digit c.
func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// restWriter is the ResponseWriter of a REST call, whose error responses,
// google.rpc.Status JSON, say so: vanguard writes the Content-Type of its
// own errors only when none is set, and an error it meets while the
// handler runs (a body that does not decode) finds the handler's
// "application/proto" there, or, before the handler, "application/" (its
// codec's name unknown yet). A 500 that the chain did not answer is held
// back until its body is seen, and written as 400 InvalidArgument if it
// is a client's error that vanguard blames on the server (see
// [restClientError]); so are vanguard's plain-text 415 and 405, written as
// google.rpc.Status JSON (see [restUnsupported] and
// [restMethodNotAllowed]). With capture, it keeps
// the start of an error response's body, for [rejectedCalls.observeREST].
type restWriter struct {
	http.ResponseWriter
	sent      *http.Request // the request as it came (see [asSent])
	capture   bool          // keep the start of an error response's body
	headAsGet bool          // a HEAD is served as a GET (see [routeMethods.headAsGet])
	held      bool          // a 500, 415 or 405 is held back, its body in errBody
	heldCode  int           // the status held back
	status    int           // the status written, once written
	failed    bool          // an error status was written, with capture
	errBody   []byte        // the first maxRESTErrorBytes of its body
}

// maxRESTErrorBytes bounds the body of a REST error response that a
// [restWriter] keeps: a google.rpc.Status of vanguard's is far shorter.
const maxRESTErrorBytes = 4096

func (w *restWriter) WriteHeader(code int) {
	w.status = code
	if code >= http.StatusBadRequest {
		h := w.ResponseWriter.Header()
		if allow := h["Allow"]; code == http.StatusMethodNotAllowed && w.headAsGet && len(allow) == 1 && slices.Contains(strings.Split(allow[0], ","), http.MethodGet) {
			h["Allow"] = []string{allow[0] + "," + http.MethodHead} // see serve
		}
		if ct := h["Content-Type"]; len(ct) == 1 && (ct[0] == "application/proto" || ct[0] == "application/") {
			h["Content-Type"] = []string{"application/json"}
		}
		if !w.held && (code == http.StatusInternalServerError && !answeredByChain(h) ||
			(code == http.StatusUnsupportedMediaType || code == http.StatusMethodNotAllowed) && plainError(h)) {
			w.held, w.heldCode = true, code
			return
		}
		w.failed = w.capture
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *restWriter) Write(p []byte) (int, error) {
	if w.held {
		if len(w.errBody)+len(p) <= maxRESTErrorBytes {
			w.errBody = append(w.errBody, p...)
			return len(p), nil
		}
		if w.heldCode != http.StatusInternalServerError {
			// Its text is replaced whole (see release): what passes
			// the bound is dropped.
			w.errBody = append(w.errBody, p[:maxRESTErrorBytes-len(w.errBody)]...)
			return len(p), nil
		}
		if err := w.release(); err != nil {
			return 0, err
		}
	}
	if w.failed && len(w.errBody) < maxRESTErrorBytes {
		w.errBody = append(w.errBody, p[:min(len(p), maxRESTErrorBytes-len(w.errBody))]...)
	}
	return w.ResponseWriter.Write(p)
}

// release writes the 500 held back and the body written so far, or a 400
// in its place (see [restClientError]); or the 415 or 405 held back, as
// google.rpc.Status JSON (see [restUnsupported], [restMethodNotAllowed]).
func (w *restWriter) release() error {
	w.held = false
	code := w.heldCode
	if code != http.StatusInternalServerError {
		h := w.ResponseWriter.Header()
		if code == http.StatusMethodNotAllowed {
			w.errBody = restMethodNotAllowed(w.sent.Method, h["Allow"])
		} else {
			w.errBody = restUnsupported(w.errBody)
		}
		h["Content-Type"] = []string{"application/json"}
		delete(h, "X-Content-Type-Options")
		delete(h, "Content-Length")
	} else if body, ok := restClientError(w.errBody); ok {
		code, w.errBody = http.StatusBadRequest, body
		delete(w.ResponseWriter.Header(), "Content-Length")
	}
	w.failed, w.status = w.capture, code
	w.ResponseWriter.WriteHeader(code)
	_, err := w.ResponseWriter.Write(w.errBody)
	if !w.capture {
		w.errBody = nil
	}
	return err
}

// Flush implements http.Flusher, which vanguard requires. A 500 held
// back stays so until [restWriter.release].
func (w *restWriter) Flush() {
	if w.held {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the ResponseWriter w wraps, for [http.ResponseController].
func (w *restWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
