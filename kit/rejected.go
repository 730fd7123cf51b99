package kit

import (
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/requestid"
	"github.com/connectkit/connectkit/internal/respstatus"
	"github.com/connectkit/connectkit/internal/restcall"
)

// rejectedCalls observes the calls to a mounted procedure whose response
// was written without kit's interceptor chain ever running: connect
// answers some calls before it (a unary message that does not decode, an
// unsupported content type or compression, a GET of a method with side
// effects, unary gRPC without a message), and kit's serving answers a
// Connect unary body over MaxRequestBytes itself, and a caller that
// [WithAuth]'s func refuses (which [Server.rejectCall] observes itself,
// with its code in every protocol). Logging and Metrics never
// see them, so they are counted in kit_rejected_calls_total and logged at
// warn, at most [rejectedLinesPerSecond] lines a second.
//
// kit's routes check each request once its handler returned (see
// [routes.serve]), and read its code back from its response: gRPC's and
// gRPC-Web's from its header or trailers, a Connect call's from the
// status and body that a [respstatus.Writer] recorded. A call reached the chain when the RequestID interceptor
// saw it: over HTTP/1.x, when the routes echoed its request id, the
// connection's State records that the interceptor found it
// (connctx.State.Served); otherwise its response carries the X-Request-Id
// that the interceptor gave it, in its header or trailers. So on a served
// call the check costs a flag over HTTP/1.x and one lookup in the response
// header otherwise; without the RequestID interceptor
// (kit.WithoutDefaultInterceptors, interceptors.WithoutRequestID) nothing
// is observed. A REST call is checked by the REST routes instead, as a
// call of the method vanguard turned it into, or of none when vanguard
// refused it first (see [rejectedCalls.observeREST]).
type rejectedCalls struct {
	vec    *prometheus.CounterVec
	logger *slog.Logger

	// procedures holds the mounted procedures' labels by path
	// ("/pkg.Service/Method"), copied on every Mount.
	procedures atomic.Pointer[map[string]procedureLabels]
	mu         sync.Mutex // held while mounting

	lines lineLimiter
}

// procedureLabels are a mounted procedure's grpc_service and grpc_method,
// and whether it is a bidi stream, which connect refuses over HTTP/1.x.
type procedureLabels struct {
	service, method string
	bidi            bool
}

// rejectedLinesPerSecond bounds the warn lines of rejected calls: a client
// flooding the port with malformed calls would otherwise write a line for
// each. The counter counts them all.
const rejectedLinesPerSecond = 10

func newRejectedCalls(reg prometheus.Registerer, logger *slog.Logger) (*rejectedCalls, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kit_rejected_calls_total",
		Help: "Calls to a mounted procedure answered before kit's interceptor chain ran (a message that does not decode, an unsupported content type or compression, a malformed timeout, a body over the limit, a caller that WithAuth refused), which grpc_server_* do not count, by protocol and, where kit reads it back (gRPC, gRPC-Web, REST, Connect), gRPC code.",
	}, []string{"grpc_service", "grpc_method", "protocol", "grpc_code"})
	vec, err := registerOrFind(reg, vec) // another server's, on a registry they share
	if err != nil {
		return nil, err
	}
	c := &rejectedCalls{vec: vec, logger: logger}
	c.procedures.Store(&map[string]procedureLabels{})
	return c, nil
}

// add records the procedures of service, mounted.
func (c *rejectedCalls) add(service protoreflect.ServiceDescriptor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.procedures.Load()
	methods := service.Methods()
	procs := make(map[string]procedureLabels, len(old)+methods.Len())
	maps.Copy(procs, old)
	name := string(service.FullName())
	for i := range methods.Len() {
		md := methods.Get(i)
		m := string(md.Name())
		procs["/"+name+"/"+m] = procedureLabels{service: name, method: m,
			bidi: md.IsStreamingClient() && md.IsStreamingServer()}
	}
	c.procedures.Store(&procs)
}

// isProcedure says whether path is a mounted procedure's, one that
// observe would count.
func (c *rejectedCalls) isProcedure(path string) bool {
	_, ok := (*c.procedures.Load())[path]
	return ok
}

// answeredByChain says whether the response whose header is h carries the
// request id that the RequestID interceptor gives every call it sees, in
// its header or, for gRPC, its trailers.
func answeredByChain(h http.Header) bool {
	return h[requestid.Header] != nil || h[http.TrailerPrefix+requestid.Header] != nil
}

// observe counts and logs r, a call whose response was written without the
// chain, if its path is a mounted procedure's (the calls to unknown ones
// are kit_unknown_procedure_calls_total's). h is its response's header.
//
// It reads nothing of r's header but for connect's refusals, made before
// connect writes it: a handler mounted around connect's may return before
// connect does (http.TimeoutHandler at its timeout). The protocol is the
// response's (a refusal's, the request's), the request id the one kit
// echoed, if any. A Connect unary error's code is in its status and JSON
// body, a stream's in its last message: answer, when not nil, recorded
// them (see [routes.serve]), and an answer of kit's own noted its status
// (see [noteStatus]).
//
// A response with connect's Accept-Post is its 415 for a content type it
// does not serve, which carries no content type of its own, and for which
// connect returns before it touches the request: its protocol is the
// request's content type's (gRPC-Web's text mode, which connect does not
// serve, is "grpcweb"), and the line's error names that content type; for
// a Connect GET, whose codec is its query's encoding, that encoding.
//
// A response that carries no RPC error, and is none of connect's bare
// refusals, is no rejected call (see [bareRefusal]): the answer of a
// handler of the application's own.
func (c *rejectedCalls) observe(h http.Header, r *http.Request, answer *respstatus.Writer) {
	l, ok := (*c.procedures.Load())[r.URL.Path]
	if !ok {
		return
	}
	if h["Accept-Post"] != nil {
		if r.Method == http.MethodGet { // only Connect serves GET
			c.record(l, connect.ProtocolConnect, 0, unsupportedEncoding(r.URL.Query()), false, h, r)
			return
		}
		ct := header.Get(r.Header, "Content-Type")
		c.record(l, protocolOf(ct), 0, unsupportedContentType(ct), false, h, r)
		return
	}
	protocol := protocolOf(header.Get(h, "Content-Type"))
	var (
		code  connect.Code
		msg   string
		known bool
	)
	if protocol == connect.ProtocolConnect {
		code, msg, known = notedStatus(h)
		if !known && answer != nil {
			code, msg, known = connectStatus(h, answer.Status(), answer.Body())
		}
	} else {
		code, msg, known = grpcStatus(h)
	}
	if !known || code == 0 {
		if !bareRefusal(h, r, l.bidi, answer) {
			return // an answer of the handler's own, not a refused call
		}
		// Refused before connect read more than its method and protocol,
		// with no content type: the request's (only Connect serves GET).
		if r.Method != http.MethodGet {
			protocol = protocolOf(header.Get(r.Header, "Content-Type"))
		}
	}
	c.record(l, protocol, code, msg, known, h, r)
}

// bareRefusal says whether a response that carries no RPC error (h its
// header, answer what a [respstatus.Writer] recorded of it, if one did)
// is one of connect's refusals without a code: a method it does not
// serve (405, with Allow), a GET with a body (415) or a bidi stream over
// HTTP/1.x (505). Anything else that carries no error (an upgrade to a
// WebSocket, a page, a success, http.TimeoutHandler's 503) is an answer
// of a handler the application mounted at a procedure's path, or around
// connect's, and not a refusal: the chain, when it runs, observes the
// call itself.
//
// A gRPC or gRPC-Web call over HTTP/1.x is served without a recorder
// (answer nil): connect's 505 to it, a bidi stream's (bidi), is told by
// the Connection: close it sets and the content type it does not.
func bareRefusal(h http.Header, r *http.Request, bidi bool, answer *respstatus.Writer) bool {
	if h["Allow"] != nil {
		return true
	}
	if answer == nil {
		return bidi && r.ProtoMajor < 2 && h["Connection"] != nil && h["Content-Type"] == nil
	}
	switch answer.Status() {
	case http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType, http.StatusHTTPVersionNotSupported:
		return true
	}
	return false
}

// maxLoggedContentType bounds the content type a rejected call's line
// quotes: a client chooses it.
const maxLoggedContentType = 128

// unsupportedContentType says why connect refused ct, a request's content
// type.
func unsupportedContentType(ct string) string {
	msg := "unsupported content type " + quoteBounded(ct)
	if strings.HasPrefix(strings.ToLower(ct), "application/grpc-web-text") {
		msg += ": gRPC-Web's text mode, which connect does not serve (binary gRPC-Web only)"
	}
	return msg
}

// unsupportedEncoding says why connect refused a Connect GET whose query
// is q: its encoding names no codec it serves, or it has none.
func unsupportedEncoding(q url.Values) string {
	if !q.Has("encoding") {
		return "Connect GET without an encoding query parameter"
	}
	return "unsupported encoding " + quoteBounded(q.Get("encoding"))
}

// quoteBounded quotes s, a value a client chose, cut to
// maxLoggedContentType bytes.
func quoteBounded(s string) string {
	if len(s) > maxLoggedContentType {
		s = s[:maxLoggedContentType] + "..."
	}
	return strconv.Quote(s)
}

// protocolREST is the protocol label and attribute of a REST call (see
// [restRoutes]): restcall's, which the interceptors give the calls REST
// routes make, so that a rejected line and an rpc line name it alike.
const protocolREST = restcall.Protocol

// observeREST counts and logs a REST call whose response was written
// without the chain, with an error status: call is the request vanguard
// was given, whose path it rewrote to the procedure's once it turned the
// request into a call of a mounted procedure, and sent the request as it
// came. h is the response's header and body the start of its body,
// google.rpc.Status JSON whose code and message the line and label name,
// or vanguard's plain text. A request that vanguard refused before it
// made a call (a route's path with another method, 405; a type it does
// not take, 415; a path variable that does not parse, 400) is of no
// procedure that kit can tell: its labels name none, and its line names
// the HTTP method, path and status instead.
func (c *rejectedCalls) observeREST(h http.Header, call, sent *http.Request, status int, body []byte) {
	code, msg, known := restStatus(body)
	if l, ok := (*c.procedures.Load())[call.URL.Path]; ok {
		c.record(l, protocolREST, code, msg, known, h, call)
		return
	}
	attrs := []slog.Attr{
		slog.String("method", sent.Method),
		slog.String("path", sent.URL.Path),
		slog.Int("http_status", status),
	}
	if !known {
		attrs = append(attrs, slog.String("error", strings.TrimSpace(string(body))))
	}
	c.record(procedureLabels{}, protocolREST, code, msg, known, h, sent, attrs...)
}

// record counts and logs r, a call of the procedure labelled l in protocol
// whose response, whose header is h, was written without the chain; code
// and msg are its status, if known, and msg alone, if not empty, says what
// was wrong with a call that got no status. A call of no known procedure
// (l's labels empty) is logged with attrs in place of its procedure.
func (c *rejectedCalls) record(l procedureLabels, protocol string, code connect.Code, msg string, known bool, h http.Header, r *http.Request, attrs ...slog.Attr) {
	grpcCode := ""
	if known {
		grpcCode = grpcCodeNames[code]
	}
	c.vec.WithLabelValues(l.service, l.method, protocol, grpcCode).Inc()
	suppressed, ok := c.lines.allow(time.Now())
	if !ok {
		return
	}
	if l.service != "" {
		attrs = append(attrs, slog.String("procedure", r.URL.Path))
	}
	attrs = append(attrs,
		slog.String("protocol", protocol),
		slog.String("http", r.Proto),
		slog.String("peer", r.RemoteAddr),
	)
	if known { // named as the rpc lines name codes
		attrs = append(attrs, slog.String("code", codeName(code)), slog.String("error", msg))
	} else if msg != "" {
		attrs = append(attrs, slog.String("error", msg))
	}
	if id := header.Get(h, requestid.Header); id != "" {
		attrs = append(attrs, slog.String("request_id", id)) // echoed before the handler
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	c.logger.LogAttrs(r.Context(), slog.LevelWarn, "rpc rejected before the interceptor chain", attrs...)
}

// lineLimiter lets through at most rejectedLinesPerSecond lines in each
// second, and counts those it held back.
type lineLimiter struct {
	mu         sync.Mutex
	second     int64 // the Unix second the count is of
	n          int   // lines let through in it
	suppressed int64 // held back since the last line let through
}

// allow reports whether a line may be written at now, and how many were
// held back before it.
func (l *lineLimiter) allow(now time.Time) (suppressed int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		l.second, l.n = s, 0
	}
	if l.n >= rejectedLinesPerSecond {
		l.suppressed++
		return 0, false
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return suppressed, true
}
