package kit

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/connectkit/connectkit/internal/restcall"
)

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
// -X GET -d sends a form), as it did a GET without a body that a client
// gave a Content-Type all the same. Where another route of the method takes a
// body, vanguard sees it, and a route that takes none refuses it: the call
// is then served again without it (see [restRoutes.serveWithoutBody]).
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
// [withHeld]), and a PATCH's FieldMask from its body (see [patchMask]);
// service is the service h serves.
//
// A REST response of google.api.HttpBody, or of a stream, is not
// compressed (see [identityAnswer]); any other may be, and says that it
// varies with the client's Accept-Encoding (see [varyEncoding]).
//
// An HTTP error that h answers without a Connect error (a mux's plain
// 404) reaches the client with its status (see [plainAnswer]).
func transcodedBody(service protoreflect.ServiceDescriptor, h http.Handler) http.Handler {
	inputs := map[string]protoreflect.MethodDescriptor{} // by procedure
	patches := map[string]*patchMask{}                   // by procedure, those that have one
	methods := service.Methods()
	for i := range methods.Len() {
		procedure := "/" + string(service.FullName()) + "/" + string(methods.Get(i).Name())
		inputs[procedure] = methods.Get(i)
		if p := patchMaskOf(methods.Get(i)); p != nil {
			patches[procedure] = p
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := inputs[r.URL.Path]
		stream := m != nil && (m.IsStreamingClient() || m.IsStreamingServer())
		q, ok := heldFrom(r.Context())
		if raw, lost := r.Context().Value(sentQueryKey{}).(string); lost {
			// Vanguard set none of the query (see [lostQuery]): kit sets
			// it all, the parameters it held among them.
			q = wholeQuery(raw)
			ok = q != nil
		}
		if b := patchBodyOf(r.Context()); b != nil {
			if mask, fill := patches[r.URL.Path].held(b); fill {
				q, ok = append(q[:len(q):len(q)], mask), true
			}
		}
		if stream && !m.IsStreamingClient() {
			if r = readStreamBody(r); r == nil {
				return // refused: served again without it
			}
		}
		if ok && m != nil {
			if r = withHeld(w, r, q, m.Input(), stream); r == nil {
				return
			}
		}
		switch {
		case m == nil:
		case stream || m.Output().FullName() == httpBodyName:
			r = identityAnswer(r)
		case r.Method != http.MethodGet:
			varyEncoding(w.Header())
		}
		if _, ok := r.Body.(*vanguardBody); !ok && r.Body != nil && r.Body != http.NoBody {
			r = r.WithContext(r.Context())
			r.Body = &vanguardBody{ReadCloser: r.Body}
		}
		// The interceptors log and count the call as rest, not connect.
		// r's URL is kit's copy (see [restRoutes.vanguardRequest]) or
		// withHeld's, which vanguard rewrote already: changed in place.
		restcall.Mark(r.URL)
		if m != nil {
			pa := &plainAnswer{ResponseWriter: w, procedure: r.URL.Path, stream: stream}
			defer pa.finish()
			w = pa
		}
		if r.Method == http.MethodGet && m != nil && !stream {
			serveConnectGet(h, w, r, m.Output().FullName() != httpBodyName)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// httpBodyName is the full name of google.api.HttpBody, whose data a
// REST response carries as it is, with the message's Content-Type.
const httpBodyName = "google.api.HttpBody"

// identityAnswer gives r, vanguard's call of a method for a REST client,
// no Accept-Encoding (the Connect unary protocol's) nor
// Connect-Accept-Encoding (its streaming protocol's), so that the handler
// answers it uncompressed and vanguard names no Content-Encoding to the
// client; r is vanguard's call of a stream, or of a method that answers
// google.api.HttpBody.
//
// A stream: vanguard (v0.4.0) names the stream's compression, which
// connect declares in the response's header before any message, as the
// REST response's Content-Encoding, then writes each message as the
// handler sent it: one under compressMinBytes uncompressed, a larger one
// as a gzip member of its own. A download of google.api.HttpBody under
// 1 KiB was then an uncompressed body that said gzip, which Go's client
// failed to read ("gzip: invalid header") and a browser showed as garbage.
//
// A unary google.api.HttpBody: its data is an arbitrary payload, often
// compressed already (an image, an archive), which vanguard gzipped again
// for a client that accepts gzip when it was 1 KiB or more, whatever its
// Content-Type (Content-Encoding: gzip on an application/gzip). So a
// method answers its HttpBody as it made it, unary or stream, as
// grpc-gateway writes one; identity costs no CPU.
func identityAnswer(r *http.Request) *http.Request {
	if r.Header["Accept-Encoding"] == nil && r.Header["Connect-Accept-Encoding"] == nil {
		return r
	}
	r = r.WithContext(r.Context())
	r.Header = r.Header.Clone()
	delete(r.Header, "Accept-Encoding")
	delete(r.Header, "Connect-Accept-Encoding")
	return r
}

// varyEncoding adds Accept-Encoding to h's Vary: the REST response of a
// unary method other than google.api.HttpBody is gzipped for a client that
// accepts it (from 1 KiB), so a cache (a CDN, a browser's) must not give
// one client's response to a client that sent another Accept-Encoding.
// Connect adds it to the response of its GET calls itself, which vanguard
// makes of a method without side effects; the others, vanguard's Connect
// POSTs, had none, although a REST route of such a method may be a GET
// whose handler sets Cache-Control.
func varyEncoding(h http.Header) {
	h["Vary"] = append(h["Vary"], "Accept-Encoding")
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
		if httpRules(methods.Get(i)) != nil {
			return true
		}
	}
	return false
}

// httpRules returns the routes of md's google.api.http option, its
// additional bindings after it, or nil when it has none.
func httpRules(md protoreflect.MethodDescriptor) []*annotations.HttpRule {
	opts := md.Options()
	if opts == nil || !proto.HasExtension(opts, annotations.E_Http) {
		return nil
	}
	rule, _ := proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
	return append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...)
}

// checkGetBodies returns an error naming the first route of service that
// is a get with a body, its method and the rule it breaks, which
// grpc-gateway's generator enforces ("must not set request body when http
// method is GET", internal/descriptor/services.go): google.api.http maps a
// body "for HTTP methods that allow a request body". grpc-gateway refuses
// no other route for its body, and kit neither: a custom kind GET or "*"
// with a body is served as grpc-gateway serves it, its body read when a
// request has one; a delete with a body (RFC 9110 allows it, grpc-gateway
// serves it with allow_delete_body) too.
func checkGetBodies(service protoreflect.ServiceDescriptor) error {
	methods := service.Methods()
	for i := range methods.Len() {
		for _, r := range httpRules(methods.Get(i)) {
			if get, ok := r.GetPattern().(*annotations.HttpRule_Get); ok && r.GetBody() != "" {
				return fmt.Errorf("REST route get %q with body %q of %s: a get takes no request body (grpc-gateway's generator refuses it: \"must not set request body when http method is GET\"): drop the body, or make the route a post", get.Get, r.GetBody(), methods.Get(i).FullName())
			}
		}
	}
	return nil
}
