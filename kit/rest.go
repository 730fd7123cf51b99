package kit

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
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
		vanguard.WithMaxMessageBufferBytes(uint32(min(max(maxRequest, maxResponse), math.MaxUint32))),
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
	methods := routeMethods{routes: map[string]bool{}, bodies: map[string]bool{}, queryNames: map[string]bool{}}
	if old := rr.methods.Load(); old != nil {
		maps.Copy(methods.routes, old.routes)
		maps.Copy(methods.bodies, old.bodies)
		maps.Copy(methods.queryNames, old.queryNames)
		methods.inputs = slices.Clone(old.inputs)
	}
	methods.add(service)
	rr.methods.Store(&methods)
	rr.transcoder.Store(t)
}

// routeMethods are the HTTP methods of the mounted services' routes, as
// their google.api.http options name them ("*": a custom kind, which
// vanguard matches with any method).
type routeMethods struct {
	routes map[string]bool // the methods of every route
	bodies map[string]bool // those of the routes that take a body
	// queryNames are the names of the routed requests' fields, true for
	// those whose query parameters vanguard may get wrong (see
	// [addQueryFields]), inputs those requests' messages, each once.
	queryNames map[string]bool
	inputs     []protoreflect.MessageDescriptor
}

// add records the methods of service's routes, and their requests.
func (m *routeMethods) add(service protoreflect.ServiceDescriptor) {
	methods := service.Methods()
	for i := range methods.Len() {
		opts := methods.Get(i).Options()
		if opts == nil || !proto.HasExtension(opts, annotations.E_Http) {
			continue
		}
		if in := methods.Get(i).Input(); !slices.ContainsFunc(m.inputs, func(md protoreflect.MessageDescriptor) bool { return md.FullName() == in.FullName() }) {
			m.inputs = append(m.inputs, in)
			addQueryFields(m.queryNames, in)
		}
		rule, _ := proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
		for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
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
			}
		}
	}
}

// takesBody says whether a route of method may take a body.
func (m *routeMethods) takesBody(method string) bool {
	return m.bodies[method] || m.bodies["*"]
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
	// Vanguard rewrites the URL of the request it is given to the
	// procedure's path: a copy leaves r's as it came, for the routes,
	// which would otherwise take r for a Connect call of the procedure
	// (see [routes.serve]). Its router splits the path at its slashes
	// and unescapes each path variable itself, as google.api.http has it
	// (a %2F in a one-segment variable is a slash of its value), but
	// reads URL.Path, which net/http has unescaped already: "/v1/a%2Fb"
	// was three segments, which no "/v1/{name}" matched, and "%25" a
	// lone "%" that failed to unescape again. It gets the path as sent,
	// its unreserved characters unescaped (see [unescapeUnreserved]),
	// unless the path holds an escaped slash: vanguard v0.4.0 unescapes
	// a %2F into a slash in a variable of several segments too
	// ("{name=shelves/*}" got "shelves/a/../../admin", a value of a shape
	// its template cannot have), so such a path is matched as net/http
	// unescaped it, a %2F as a slash, as grpc-gateway's default does.
	// Telling which route vanguard will take, to escape the slash only
	// in those variables, would re-write vanguard's router in kit.
	methods := rr.methods.Load()
	u := *r.URL
	if p := r.URL.EscapedPath(); !escapedSlash(p) {
		u.Path, u.RawPath = unescapeUnreserved(p), ""
	}
	ctx := r.Context()
	if u.RawQuery != "" {
		var held heldQuery
		if u.RawQuery, held = methods.holdQuery(u.RawQuery); held != nil {
			ctx = context.WithValue(ctx, heldQueryKey{}, held)
		}
	}
	c := r.WithContext(ctx)
	if q := u.RawQuery; strings.IndexByte(q, '.') >= 0 || strings.Contains(q, "%2E") || strings.Contains(q, "%2e") {
		u.RawQuery = lastElementNamed(q)
	}
	c.URL = &u
	if r.Method == http.MethodHead && methods.headAsGet() {
		// A HEAD is served wherever a GET is, as net/http's ServeMux
		// serves it: net/http writes the GET's header and drops its
		// body. Vanguard matches routes by method and has no HEAD.
		c.Method = http.MethodGet
	}
	if r.Header["Grpc-Timeout"] != nil {
		grpcTimeout(c, r.Header)
	}
	if r.Body != nil && r.Body != http.NoBody {
		if methods.takesBody(c.Method) {
			rr.bound(c, r)
		} else {
			ignoreBody(c)
			if r.ProtoMajor == 1 {
				// Nothing reads this body but net/http, which reads what
				// arrives of it before the response, and vanguard
				// flushes the response before it returns: so the read
				// deadline goes on now, when nothing else reads (see
				// [boundUnreadBody], which bounds it again after).
				if d, ok := w.(connDeadlines); ok {
					_ = d.SetReadDeadline(time.Now().Add(rr.ignoredBody))
				}
			}
		}
	}
	rw := &restWriter{ResponseWriter: w, sent: r, capture: rr.rejected != nil, headAsGet: methods.headAsGet()}
	rr.transcode(t, rw, c)
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

// recover answers a panic in vanguard's transcoding of c, which v0.4.0
// has on requests a client may send (a query parameter of a repeated
// google.protobuf.Timestamp or wrapper field, ?times=2020-01-01T00:00:00Z),
// as 500 Internal, google.rpc.Status JSON whose message says nothing of
// the panic, and logs it once, at error, with its value and stack, as
// [interceptors.Recovery] answers and logs a handler's: left to net/http,
// the panic closed the HTTP/1.1 connection without a response (or reset
// the HTTP/2 stream) and went to the server's error log alone. A panic
// after the response's header was written aborts the response
// (http.ErrAbortHandler), which net/http does not log again;
// http.ErrAbortHandler itself goes on to net/http.
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
	if rw.status != 0 {
		panic(http.ErrAbortHandler) //nolint:forbidigo // too late to answer
	}
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
// [restClientError]). With capture, it keeps the start of an error
// response's body, for [rejectedCalls.observeREST].
type restWriter struct {
	http.ResponseWriter
	sent      *http.Request // the request as it came (see [asSent])
	capture   bool          // keep the start of an error response's body
	headAsGet bool          // a HEAD is served as a GET (see [routeMethods.headAsGet])
	held      bool          // a 500 is held back, its body in errBody
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
		if code == http.StatusInternalServerError && !w.held && !answeredByChain(h) {
			w.held = true
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
// in its place (see [restClientError]).
func (w *restWriter) release() error {
	w.held = false
	code := http.StatusInternalServerError
	if body, ok := restClientError(w.errBody); ok {
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

// bound makes b, a copy for vanguard of r, which has a body, fail past
// maxBody, and gives it [jsonType]'s Content-Type. r stays as it came,
// for net/http, which reads what the handler left of its body to keep the
// connection or close it, and for the handler of a request that no route
// matches (see [asSent]).
func (rr *restRoutes) bound(b, r *http.Request) {
	if jsonType(r.Header) {
		b.Header = b.Header.Clone()
		b.Header["Content-Type"] = []string{"application/json"}
	}
	if r.ContentLength > rr.maxBody {
		// Read until the limit is passed, as a body of unstated
		// length is: vanguard would make room for all of it first.
		b.ContentLength = -1
	}
	b.Body = &restBody{ReadCloser: r.Body, left: rr.maxBody, limit: rr.maxBody}
}

// ignoreBody gives c, a copy for vanguard of a request whose body no
// route of its method takes (a GET's, as a rule), no body, as grpc-gateway
// and Kratos ignore the body of a route that takes none: vanguard failed
// a GET with a body, and answered 415 one whose type was not JSON (curl's
// -X GET -d sends a form). Where another route of the method takes a
// body, vanguard sees it, and a route that takes none answers it 400 (see
// [restClientError]).
func ignoreBody(c *http.Request) {
	c.Body, c.ContentLength = http.NoBody, 0
	if c.Header["Content-Type"] != nil || c.Header["Content-Encoding"] != nil {
		c.Header = c.Header.Clone()
		delete(c.Header, "Content-Type")
		delete(c.Header, "Content-Encoding")
	}
}

// grpcTimeout gives c, a copy for vanguard of a REST request whose header
// h has a Grpc-Timeout, that timeout as Connect-Timeout-Ms, unless h sets
// one of the timeouts that vanguard passes on to the handler: the
// handler's connect, called in the Connect protocol, reads only that
// header, and vanguard takes a REST client's own as X-Server-Timeout
// (seconds). grpc-gateway gives a REST call the Grpc-Timeout it is sent,
// and so its clients may send one. The Grpc-Timeout itself is not passed
// on: vanguard would, and kit's bounds on the call's body and response
// (see [serviceHandler]), which read it before Connect-Timeout-Ms, as a
// gRPC call has it, would then time the call by another deadline than
// connect's.
func grpcTimeout(c *http.Request, h http.Header) {
	c.Header = h.Clone()
	delete(c.Header, "Grpc-Timeout")
	if h["Connect-Timeout-Ms"] != nil || h["X-Server-Timeout"] != nil {
		return
	}
	timeout, ok := callerTimeout(h)
	if !ok {
		return
	}
	const maxMillis = 9_999_999_999 // the ten digits connect reads
	ms := min((timeout+time.Millisecond-1)/time.Millisecond, maxMillis)
	c.Header["Connect-Timeout-Ms"] = []string{strconv.FormatInt(int64(ms), 10)}
}

// asSent returns the ResponseWriter and request that w and r, which
// vanguard passes on because no route matches r, were made from by
// [restRoutes.serve], or w and r.
func asSent(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request) {
	if rw, ok := w.(*restWriter); ok {
		return rw.ResponseWriter, rw.sent
	}
	return w, r
}

// restBody is a REST request's body, which fails with ResourceExhausted
// (HTTP 429) once it has passed limit bytes, as connect fails a Connect
// JSON body over MaxRequestBytes: vanguard's own bound on what it buffers
// is the larger of the request and response limits.
type restBody struct {
	io.ReadCloser
	left, limit int64 // left: the bytes it may still read; -1 once past the limit
}

func (b *restBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		n, b.left = int(b.left), -1
		return n, b.tooLarge()
	}
	b.left -= int64(n)
	return n, err
}

func (b *restBody) tooLarge() error {
	return connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("request body exceeds the %d-byte limit (KIT_MAX_REQUEST_BYTES)", b.limit))
}

// jsonType says whether the Content-Type in h names JSON in UTF-8 in
// another spelling ("application/json;charset=UTF-8", as Spring's clients
// send it, "Application/JSON"), to be written as "application/json":
// vanguard takes a JSON body only under that type or "application/json;
// charset=utf-8", compared byte for byte, and answers any other 415. JSON
// in another charset, or with other parameters, is left to that answer.
func jsonType(h http.Header) bool {
	types := h["Content-Type"]
	if len(types) != 1 || types[0] == "application/json" || types[0] == "application/json; charset=utf-8" {
		return false
	}
	mediaType, params, err := mime.ParseMediaType(types[0])
	if err != nil || mediaType != "application/json" {
		return false
	}
	charset, ok := params["charset"]
	return len(params) == 0 || len(params) == 1 && ok && strings.EqualFold(charset, "utf-8")
}

// restRequest says whether vanguard would take r for a REST call, not for
// a gRPC, gRPC-Web or Connect one: those to a path no mounted service has
// get kit's own answer (see [unimplemented]), where vanguard would refuse
// some (two Content-Type headers, a Connect POST without one) with its own
// statuses.
func restRequest(r *http.Request) bool {
	types := r.Header["Content-Type"]
	if len(types) > 1 {
		return false
	}
	if len(types) == 1 {
		ct := types[0]
		if strings.HasPrefix(ct, "application/connect+") || strings.HasPrefix(ct, "application/grpc") {
			return false
		}
		if !strings.HasPrefix(ct, "application/") {
			return true // any body, to a google.api.HttpBody request
		}
	}
	if v := r.Header["Connect-Protocol-Version"]; len(v) == 1 && v[0] == "1" {
		return false
	}
	if !strings.Contains(r.URL.RawQuery, "connect=") {
		return true
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	return q.Get("connect") != "v1"
}

// transcodedBody wraps the handler of a service for the calls vanguard
// makes of it, so that a REST request that makes no request message (a
// malformed body, a path variable or query parameter that does not parse,
// a body that does not inflate) fails to be read, and its method does not
// run. Vanguard answers the client such a request's error itself, but
// ends the body it gives the handler as if it were complete and empty,
// which connect would read as an empty message and call the method with;
// its next read returns the error, which [vanguardBody] returns instead.
//
// It also sets the query parameters that [restRoutes.serve] held from
// vanguard in the request message, or answers their error (see
// [withHeld]); service is the service h serves.
//
// A stream's REST response is not compressed: see [identityStream].
func transcodedBody(service protoreflect.ServiceDescriptor, h http.Handler) http.Handler {
	inputs := map[string]protoreflect.MethodDescriptor{} // by procedure
	methods := service.Methods()
	for i := range methods.Len() {
		inputs["/"+string(service.FullName())+"/"+string(methods.Get(i).Name())] = methods.Get(i)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := inputs[r.URL.Path]
		stream := m != nil && (m.IsStreamingClient() || m.IsStreamingServer())
		if q, ok := heldFrom(r.Context()); ok && m != nil {
			if r = withHeld(w, r, q, m.Input(), stream); r == nil {
				return
			}
		}
		if stream {
			r = identityStream(r)
		}
		if _, ok := r.Body.(*vanguardBody); !ok && r.Body != nil && r.Body != http.NoBody {
			r = r.WithContext(r.Context())
			r.Body = &vanguardBody{ReadCloser: r.Body}
		}
		h.ServeHTTP(w, r)
	})
}

// identityStream gives r, vanguard's call of a stream (the Connect
// streaming protocol) for a REST client, no Connect-Accept-Encoding, so that
// the handler answers it uncompressed and vanguard names no
// Content-Encoding to the client. Vanguard (v0.4.0) names the stream's
// compression, which connect declares in the response's header before
// any message, as the REST response's Content-Encoding, then writes each
// message as the handler sent it: one under compressMinBytes uncompressed,
// a larger one as a gzip member of its own. A download of google.api.HttpBody
// under 1 KiB was then an uncompressed body that said gzip, which Go's
// client failed to read ("gzip: invalid header") and a browser showed as
// garbage. Identity costs no CPU, and a download of a type that is
// compressed already (an image, an archive) is not gzipped again.
func identityStream(r *http.Request) *http.Request {
	if r.Header["Connect-Accept-Encoding"] == nil {
		return r
	}
	r = r.WithContext(r.Context())
	r.Header = r.Header.Clone()
	delete(r.Header, "Connect-Accept-Encoding")
	return r
}

// vanguardBody is the body of a call vanguard makes, whose end is checked:
// see [transcodedBody]. After its end, it reads extra, the encoded query
// parameters that [withHeld] sets, which merge into the message.
type vanguardBody struct {
	io.ReadCloser
	one   [1]byte
	extra []byte
	ended bool // the body vanguard gives has ended, without an error
}

func (b *vanguardBody) Read(p []byte) (int, error) {
	if b.ended {
		n := copy(p, b.extra)
		b.extra = b.extra[n:]
		if len(b.extra) == 0 {
			return n, io.EOF
		}
		return n, nil
	}
	n, err := b.ReadCloser.Read(p)
	if n > 0 && errors.Is(err, io.EOF) && len(b.extra) > 0 {
		return n, nil // the end is checked on the next read, before extra
	}
	if n == 0 && errors.Is(err, io.EOF) {
		// After its end, the body says io.EOF again, or the error
		// vanguard has answered.
		if _, again := b.ReadCloser.Read(b.one[:]); again != nil && !errors.Is(again, io.EOF) {
			return 0, again
		}
		if len(b.extra) > 0 {
			b.ended = true
			return b.Read(p)
		}
	}
	return n, err
}

// hasHTTPRules says whether a method of service has a google.api.http
// option.
func hasHTTPRules(service protoreflect.ServiceDescriptor) bool {
	methods := service.Methods()
	for i := range methods.Len() {
		opts := methods.Get(i).Options()
		if opts != nil && proto.HasExtension(opts, annotations.E_Http) {
			return true
		}
	}
	return false
}

// restJSON is vanguard's JSON codec, whose errors decoding a request are
// InvalidArgument, as connect's are for a body that does not decode:
// vanguard reports an error that is not a connect one as Unknown, HTTP
// 500, which would blame the server for a client's malformed body.
type restJSON struct{ *vanguard.JSONCodec }

// Unmarshal implements vanguard.Codec.
func (c restJSON) Unmarshal(data []byte, msg proto.Message) error {
	return invalidArgument(c.JSONCodec.Unmarshal(data, msg))
}

// UnmarshalField implements vanguard.RESTCodec, for a body that is one
// field of the request (`body: "field"`).
func (c restJSON) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return invalidArgument(c.JSONCodec.UnmarshalField(data, msg, field))
}

// MarshalAppend implements vanguard.Codec. A google.rpc.Status, the
// error vanguard writes, whose message is not UTF-8 gets U+FFFD for the
// bytes that are not: vanguard quotes a query parameter or path variable
// that does not parse as it came ("unknown enum: \xff", "invalid
// parameter \"number\" value for type \"int64\": \"\xff\""), and
// answered {"code":13,"message":"failed to marshal end error"} when
// protojson refused it, with the 400 it had set.
func (c restJSON) MarshalAppend(b []byte, msg proto.Message) ([]byte, error) {
	if st, ok := msg.(*status.Status); ok && !utf8.ValidString(st.GetMessage()) {
		msg = &status.Status{Code: st.GetCode(), Message: strings.ToValidUTF8(st.GetMessage(), "\uFFFD"), Details: st.GetDetails()}
	}
	return c.JSONCodec.MarshalAppend(b, msg)
}

// invalidArgument returns err as InvalidArgument, its message made valid
// UTF-8: protojson quotes a body's bytes in its errors ("unexpected token
// \xa70"), and vanguard, which cannot write a google.rpc.Status whose
// message is not UTF-8, answered such a body {"code":13,"message":"failed
// to marshal end error"}, with the 400 it had set.
func invalidArgument(err error) error {
	if err == nil {
		return nil
	}
	if msg := err.Error(); !utf8.ValidString(msg) {
		err = errors.New(strings.ToValidUTF8(msg, "\uFFFD"))
	}
	return connect.NewError(connect.CodeInvalidArgument, err)
}

// restClientError returns the google.rpc.Status JSON of 400
// InvalidArgument that body, vanguard's JSON of an Internal or Unknown
// error (HTTP 500), stands for, if it is a client's error that vanguard
// reports as a plain error: a query parameter that names a field inside
// one that is not a message ("?text.x=1" where text is a string, a list
// or a map) or that names nothing ("?=1"), a body sent to a route that
// takes none, and a query parameter or path variable of a string field
// that is not UTF-8 ("?text=%A7"), which vanguard sets as it is and then
// fails to encode for the handler. Vanguard (v0.4.0, protocol_rest.go) reports those
// without a code, which it then gives Internal or Unknown; its messages
// are matched here, and the parameter they quote named first. Any other
// body is the server's error, and stays a 500.
func restClientError(body []byte) ([]byte, bool) {
	var status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &status) != nil || status.Code != int(connect.CodeInternal) && status.Code != int(connect.CodeUnknown) {
		return nil, false
	}
	msg := status.Message
	const inPath = "in field path "
	switch {
	case msg == "empty field path":
		msg = `invalid query parameter "": it names no field`
	case strings.HasPrefix(msg, inPath):
		quoted, err := strconv.QuotedPrefix(msg[len(inPath):])
		name, uerr := strconv.Unquote(quoted)
		if err != nil || uerr != nil {
			return nil, false
		}
		msg = fmt.Sprintf("invalid query parameter %q: %s", name, strings.TrimPrefix(msg[len(inPath)+len(quoted):], ": "))
	case strings.HasPrefix(msg, "request should have no body;"):
		msg = "this route takes no request body; " + strings.TrimPrefix(msg, "request should have no body; ")
	case msg == "string field contains invalid UTF-8": // generated code's
		msg = "a query parameter or path variable of a string field is not UTF-8"
	case dynamicUTF8Error(msg) != "":
		msg = "a query parameter or path variable of string field " + dynamicUTF8Error(msg) + " is not UTF-8"
	default:
		return nil, false
	}
	out, err := json.Marshal(struct {
		Code    int        `json:"code"`
		Message string     `json:"message"`
		Details []struct{} `json:"details"`
	}{int(connect.CodeInvalidArgument), msg, []struct{}{}})
	return out, err == nil
}

// dynamicUTF8Error returns the field that msg, protobuf-go's error for a
// string field that is not UTF-8 in a message it encodes by reflection
// (dynamicpb's, "proto: field F contains invalid UTF-8", the space after
// "proto:" a no-break one in some builds), names, or "".
func dynamicUTF8Error(msg string) string {
	const suffix = " contains invalid UTF-8"
	rest, ok := strings.CutPrefix(msg, "proto:")
	if !ok || !strings.HasSuffix(rest, suffix) {
		return ""
	}
	rest = strings.TrimLeft(rest, " \u00a0")
	field, ok := strings.CutPrefix(strings.TrimSuffix(rest, suffix), "field ")
	if !ok {
		return ""
	}
	return field
}

// restGzip is vanguard's gzip decompressor for a REST body sent with
// Content-Encoding: gzip, whose errors are InvalidArgument naming the bad
// gzip, as [restJSON]'s are for a body that does not decode: vanguard
// reports gzip's own error ("gzip: invalid header") as Unknown, HTTP 500.
// WithNoTargetCompression keeps vanguard from sending the handler a
// compressed body, not the handler from compressing its answer: vanguard
// passes on the client's Accept-Encoding, and inflates here too a unary
// answer the handler gzipped (1 KiB or more), to transcode it; a stream's
// answer is not compressed (see [identityStream]).
type restGzip struct{ r gzip.Reader }

// Reset implements connect.Decompressor.
func (d *restGzip) Reset(src io.Reader) error { return badGzip(d.r.Reset(src)) }

// Read implements connect.Decompressor.
func (d *restGzip) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == io.EOF {
		return n, err
	}
	return n, badGzip(err)
}

// Close implements connect.Decompressor.
func (d *restGzip) Close() error { return badGzip(d.r.Close()) }

func badGzip(err error) error {
	if err == nil {
		return nil
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("request body with Content-Encoding gzip does not inflate: %w", err))
}
