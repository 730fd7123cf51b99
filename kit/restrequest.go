package kit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/vanguard"
)

// vanguardRequest returns the copy of r, a REST call, that vanguard is
// given to serve (see [restRoutes.serve]), hasBody saying whether r has a
// body. With rb, which the copy's context carries, the copy has a header
// of its own, which vanguard rewrites, so that r's stays as it came for
// [restRoutes.serveWithoutBody].
//
// Vanguard rewrites the URL of the request it is given to the procedure's
// path: a copy leaves r's as it came, for the routes, which would
// otherwise take r for a Connect call of the procedure (see
// [routes.serve]). Its router splits the path at its slashes and
// unescapes each path variable itself, as google.api.http has it (a %2F
// in a one-segment variable is a slash of its value), but reads URL.Path,
// which net/http has unescaped already: "/v1/a%2Fb" was three segments,
// which no "/v1/{name}" matched, and "%25" a lone "%" that failed to
// unescape again. It gets the path as sent, its unreserved characters
// unescaped (see [unescapeUnreserved]), unless the path holds an escaped
// slash: vanguard v0.4.0 unescapes a %2F into a slash in a variable of
// several segments too ("{name=shelves/*}" got "shelves/a/../../admin", a
// value of a shape its template cannot have), so such a path is matched
// as net/http unescaped it, a %2F as a slash, as grpc-gateway's default
// does. Telling which route vanguard will take, to escape the slash only
// in those variables, would re-write vanguard's router in kit.
func (rr *restRoutes) vanguardRequest(w http.ResponseWriter, r *http.Request, methods *routeMethods, hasBody bool, rb *refusableBody) *http.Request {
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
	if rb != nil {
		ctx = context.WithValue(ctx, refusableBodyKey{}, rb)
	}
	c := r.WithContext(ctx)
	if rb != nil && hasBody {
		c.Header = r.Header.Clone()
	}
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
	switch {
	case methods.takesBody(c.Method):
		if hasBody {
			rr.bound(c, r)
			if c.Method == http.MethodPatch && methods.patches {
				c = keepPatchBody(c, r, rr.maxBuffer)
			}
		}
	default:
		// Its Content-Type goes too, with a body or without: net/http
		// gives an HTTP/1.1 GET without a body http.NoBody, an HTTP/2 one
		// a body that ends at once, and vanguard refused a type other
		// than JSON (415) on the first alone.
		ignoreBody(c)
		if hasBody && r.ProtoMajor == 1 {
			// Nothing reads this body but net/http, which reads what
			// arrives of it before the response, and vanguard flushes
			// the response before it returns: so the read deadline goes
			// on now, when nothing else reads (see [boundUnreadBody],
			// which bounds it again after).
			if d, ok := w.(connDeadlines); ok {
				_ = d.SetReadDeadline(time.Now().Add(rr.ignoredBody))
			}
		}
	}
	if r.URL.RawQuery != "" && lostQuery(c.Header) {
		c = c.WithContext(context.WithValue(c.Context(), sentQueryKey{}, r.URL.RawQuery))
	}
	return c
}

// serveWithoutBody serves r, a REST call with a body, through t again,
// without its body, and returns the request vanguard was given and the
// writer it wrote to: vanguard refused the body because the route it
// took, among routes of r's method that take one, takes none
// (`post: "/v1/users/{id}:activate"` beside `post: "/v1/users" body:
// "*"`), where grpc-gateway and Kratos ignore the body of such a route (a
// client's `{}`). Nothing was answered yet (the 500 is held back), and
// nothing of the method ran: its connect handler refused the body before
// the chain. The header fields that refusal set on w, those not in before,
// go. rb, in the context of both servings, hands the first's
// authentication to the second (see [authenticator.check]).
func (rr *restRoutes) serveWithoutBody(t *vanguard.Transcoder, w http.ResponseWriter, r *http.Request, methods *routeMethods, before []string, rb *refusableBody) (*http.Request, *restWriter) {
	h := w.Header()
	for k := range h {
		if !slices.Contains(before, k) {
			delete(h, k)
		}
	}
	rb.again = true
	c := rr.vanguardRequest(w, r, methods, false, rb)
	ignoreBody(c)
	rw := &restWriter{ResponseWriter: w, sent: r, capture: rr.rejected != nil, headAsGet: methods.headAsGet()}
	rr.transcode(t, rw, c)
	return c, rw
}

// bodyRefused says whether body, the google.rpc.Status JSON of a 500 that
// vanguard answered a REST call, refuses the call's body for a route that
// takes none (see [restClientError]).
func bodyRefused(body []byte) bool {
	var status struct {
		Message string `json:"message"`
	}
	return json.Unmarshal(body, &status) == nil && strings.HasPrefix(status.Message, noBodyRefusal)
}

// refusableBody is in the context of vanguard's request for a REST call
// with a body that a route of its method takes none with, which vanguard
// may refuse, and kit then serves the call again without it (see
// [restRoutes.serve]).
type refusableBody struct {
	again bool // the call is being served again, without its body
	// authed says that [WithAuth]'s fn let the caller in, info what it
	// returned: the call's second serving reuses them, where fn ran twice
	// for one call (a token introspected twice, a one-time token refused
	// the second time).
	authed bool
	info   any
}

type refusableBodyKey struct{}

// refusableBodyOf returns the [refusableBody] of a REST call's context,
// or nil.
func refusableBodyOf(ctx context.Context) *refusableBody {
	rb, _ := ctx.Value(refusableBodyKey{}).(*refusableBody)
	return rb
}

// readStreamBody returns r, vanguard's call of a method that streams from
// the server alone, with the start of its body, the one message's, read
// already; nil when vanguard refused the body, which it answered itself (a
// 500 that [restWriter] holds back, and [restRoutes.serve] serves the call
// again without the body). Vanguard refuses the body of a route that takes
// none (see [refusableBody]) when the method's handler reads its message,
// which connect's streaming handler does inside the chain: the
// interceptors had begun the call (an rpc line at error, metrics, a span,
// the request id), and the client got 500 Unknown in
// application/connect+proto, where a unary call's body was ignored.
// Vanguard gives nothing of a body it refuses: it ends it (EOF), and the
// next read returns the refusal; so the first bytes tell, and the message
// itself, in vanguard's buffer under its limit, is not read ahead. (Read
// whole here, it was held twice while connect read it, and io.ReadAll's
// growing cost twice its size again: 5.5 MB allocated for a 1 MiB body,
// BenchmarkRESTStreamBody/taken.)
//
// A body that ends at once without an error is vanguard's call of a route
// that takes a body, sent none: vanguard makes no message of it, which
// connect answered 501 Unimplemented ("unary request has zero messages");
// the method gets an empty one's envelope, as grpc-gateway calls it with
// an empty request.
func readStreamBody(r *http.Request) *http.Request {
	if r.Body == nil {
		return r
	}
	rb := refusableBodyOf(r.Context())
	// A message's envelope has a 5-byte prefix, even an empty one's.
	var start [5]byte
	n, err := io.ReadFull(r.Body, start[:])
	var rest io.Reader = r.Body
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		// Ended at once: the next read says whether vanguard refused it,
		// or failed it (a body that does not decode).
		if _, err = r.Body.Read(nil); errors.Is(err, io.EOF) {
			err = nil
		}
		if err != nil && rb != nil && !rb.again && strings.Contains(err.Error(), noBodyRefusal) {
			return nil
		}
		if err == nil {
			n = len(start) // an empty message: a zero flag and length
		}
		rest = errorReader{err}
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		rest = errorReader{err}
	}
	c := r.WithContext(r.Context())
	c.Body = &readBody{Reader: io.MultiReader(bytes.NewReader(start[:n]), rest), Closer: r.Body}
	return c
}

// readBody is a body read ahead, and the body it came from, to close.
type readBody struct {
	io.Reader
	io.Closer
}

// errorReader returns err, or io.EOF when err is nil.
type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}
