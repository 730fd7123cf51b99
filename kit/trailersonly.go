package kit

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"connectrpc.com/connect"
	"golang.org/x/net/http/httpguts"

	"github.com/connectkit/connectkit/internal/connctx"
	"github.com/connectkit/connectkit/internal/header"
)

// trailersOnlyWriter makes a gRPC call that fails before its response
// header is sent end in a Trailers-Only response, one HEADERS frame with
// END_STREAM carrying grpc-status, as grpc-go's server does, instead of the
// header and then trailers that connect writes on net/http. gRPC clients
// retry only such a response (gRFC A6, "when retries are valid": a
// response header commits the call): without it, grpc-go's service config
// retryPolicy and hedging never retry a kit server's Unavailable, and
// grpc-dotnet's and grpc-java's neither (connect-go issue 724, which
// connect closed: net/http offers no way to end a stream on its header).
//
// net/http does end the stream on the header when the handler returns
// having written no body and declared no trailers. connect's gRPC error
// writer puts the status in trailers (the "Trailer:" prefix) and then
// flushes, which sends the header at once: so, on that flush, when nothing
// was written or flushed before and the header holds no metadata of the
// handler's (grpc-go too sends a header frame of its own then), this
// writer moves the trailers into the header (but those net/http would
// have refused as trailers), asks for no Content-Length,
// and skips the flush; the handler returns and net/http sends them all in
// one frame. Written by hand: neither connect nor net/http offers it.
//
// Only gRPC over HTTP/2 ends so (gRPC-Web's trailers-only is connect's
// own, and Connect has none). gRPC-Web and gRPC over HTTP/1.1 calls go
// through the writer too, for its other use: once the handler returned,
// a write (a stream's Send from a goroutine the handler left running)
// fails with [errHandlerReturned] and reaches no writer of net/http's,
// which panicked then ("Header called after Handler finished" over
// HTTP/2, a nil dereference over HTTP/1.1) in that goroutine, so that
// the process crashed. Connect calls have that guard in respstatus.
//
// The writer lives in an object of its call's that is not reused (a
// stream's context; 48 bytes of its own for a unary call, 144 with the
// record of the request id kit echoes, echoingWriter), never in a
// pool, so that a late write never reaches the next call's response.
type trailersOnlyWriter struct {
	http.ResponseWriter
	sent         bool        // a header, body or flush went to the client
	trailersOnly bool        // gRPC over HTTP/2: see above
	done         atomic.Bool // the handler returned
	// served is how many fields the header had, not protocol fields,
	// before the handler ran: the server's, which every response gets
	// (rs/cors's Vary and Access-Control-*, with KIT_CORS_ALLOWED_ORIGINS;
	// "Connection: close" on a connection past KIT_MAX_CONNECTION_AGE),
	// and no metadata of the handler's.
	served int32
	// message, when not nil, is the body of a server stream, whose
	// client's message is waited for before an error that ends the
	// stream Trailers-Only while nothing of the body was read (an
	// interceptor's refusal, KIT_MAX_INFLIGHT's say), as [awaitMessage]
	// waits before WithAuth's.
	message *messageBody
	// echo, when not nil, is the request id kit wrote into the header of
	// a unary call of gRPC over HTTP/2 (see [serveGRPC]), settled before
	// the header goes out.
	echo *connctx.StreamEcho
}

// echoingWriter is the writer of a unary call of gRPC over HTTP/2 whose
// request id kit echoes, with its record, in one allocation.
type echoingWriter struct {
	trailersOnlyWriter
	record connctx.StreamEcho
}

// messageBody is a request body that records whether it was read.
type messageBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (b *messageBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.ReadCloser.Read(p)
}

// await waits for the first byte of b, the body of w's call, as
// [awaitMessage] does, unless some of it was read.
func (b *messageBody) await(w http.ResponseWriter) {
	if !b.read.Load() {
		awaitMessage(w, b)
	}
}

// grpcCall says whether r is a gRPC or gRPC-Web call, and whether it is
// gRPC over HTTP/2, which may end Trailers-Only.
func grpcCall(r *http.Request) (ok, trailersOnly bool) {
	ct := header.Get(r.Header, "Content-Type")
	const app = "application/"
	if !strings.HasPrefix(ct, app) && !hasPrefixFold(ct, app) {
		return false, false
	}
	rest := ct[len(app):]
	if !hasPrefixFold(rest, "grpc") {
		return false, false
	}
	return true, r.ProtoMajor == 2 && !hasPrefixFold(rest, "grpc-web")
}

// serveGRPC serves r, a gRPC or gRPC-Web call, with h through tw, a
// trailersOnlyWriter of r's own (nil: a new one), made to wrap w.
//
// With echo, set for a unary call when kit's chain has RequestID (nil tw),
// a call of gRPC over HTTP/2 gets its request id in w's header before h
// runs (connctx.StreamEcho): the interceptor could only have added it to
// connect's own response header map, which connect then copies twice,
// ~736 bytes and 4 objects a call (BENCHMARKS.md 35). It goes out only if
// the call reached the chain, and then where the interceptor put it
// before (see [connctx.StreamEcho.Settle]).
func serveGRPC(h http.Handler, w http.ResponseWriter, r *http.Request, tw *trailersOnlyWriter, trailersOnly, echo bool) {
	switch {
	case tw != nil:
	case trailersOnly && echo:
		e := new(echoingWriter)
		e.echo = &e.record
		tw = &e.trailersOnlyWriter
	default:
		tw = new(trailersOnlyWriter)
	}
	tw.ResponseWriter, tw.trailersOnly = w, trailersOnly
	if trailersOnly {
		tw.served = serverFields(w.Header())
	}
	if tw.echo != nil {
		tw.echo.Echo(r.Header, w.Header())
	}
	defer tw.done.Store(true) // a handler's panic too
	h.ServeHTTP(tw, r)
	tw.settleEcho() // the header goes out when the handler returns
}

// settleEcho settles the request id that kit echoed, if any, before the
// response header goes out.
func (w *trailersOnlyWriter) settleEcho() {
	if w.echo != nil && !w.sent {
		w.echo.Settle(w.ResponseWriter.Header())
	}
}

// errHandlerReturned is the error of a write to a gRPC call's writer
// once its handler returned.
var errHandlerReturned = errors.New("kit: the gRPC call's ResponseWriter was used after its handler returned")

// Header implements http.ResponseWriter; once the handler returned, it
// returns a header of its own that nothing reads.
func (w *trailersOnlyWriter) Header() http.Header {
	if w.done.Load() {
		return http.Header{}
	}
	return w.ResponseWriter.Header()
}

// serverFields counts the fields of h, a response header, that are no
// protocol fields and no trailers.
func serverFields(h http.Header) int32 {
	var n int32
	for key := range h {
		if !strings.HasPrefix(key, http.TrailerPrefix) && !protocolField(key) {
			n++
		}
	}
	return n
}

// WriteHeader implements http.ResponseWriter; once the handler
// returned, it does nothing.
func (w *trailersOnlyWriter) WriteHeader(code int) {
	if w.done.Load() {
		return
	}
	w.settleEcho()
	w.sent = true
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter; once the handler returned, it
// fails with errHandlerReturned.
func (w *trailersOnlyWriter) Write(p []byte) (int, error) {
	if w.done.Load() {
		return 0, errHandlerReturned
	}
	w.settleEcho()
	w.sent = true
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher: see the type's doc.
func (w *trailersOnlyWriter) Flush() {
	_ = w.FlushError()
}

// FlushError is http.ResponseController's Flush, with an error; once
// the handler returned, it fails with errHandlerReturned.
func (w *trailersOnlyWriter) FlushError() error {
	if w.done.Load() {
		return errHandlerReturned
	}
	w.settleEcho()
	if !w.sent && w.trailersOnly && w.toTrailersOnly() {
		return nil
	}
	w.sent = true
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// toTrailersOnly moves the trailers declared in the header into it, if
// they hold a gRPC status and the header no metadata (no field but the
// protocol's and the server's, see served), and says whether it did.
func (w *trailersOnlyWriter) toTrailersOnly() bool {
	h := w.ResponseWriter.Header()
	if h[http.TrailerPrefix+"Grpc-Status"] == nil {
		return false
	}
	// A field more than the server's is the handler's metadata. (One that
	// the handler set over a server's field, Vary, goes in the one frame.)
	if serverFields(h) > w.served {
		return false
	}
	if w.message != nil {
		w.message.await(w.ResponseWriter)
	}
	for key, values := range h {
		if name, ok := strings.CutPrefix(key, http.TrailerPrefix); ok {
			delete(h, key)
			// The fields net/http drops from trailers stay out of the
			// header too ("Connection: close" there would close the
			// connection).
			if httpguts.ValidTrailerHeader(name) {
				h[name] = append(h[name], values...)
			}
		}
	}
	h["Content-Length"] = nil // net/http would add "0"; gRPC sends none
	return true
}

// writeTrailersOnly answers r, a gRPC call over HTTP/2 that no handler
// ran for, with ce through errW, Trailers-Only when the header holds no
// field but the protocol's and served of the server's, as
// [trailersOnlyWriter] ends a handler's error. connect's ErrorWriter
// declares its trailers in a "Trailer" field, writes the header and then
// sets them, which net/http sends as a header and trailers: here its
// WriteHeader is held back and its trailers become "Trailer:"-prefixed
// ones, as connect's handlers set them, which the writer's flush moves
// into the header, or sends as trailers after it.
func writeTrailersOnly(w http.ResponseWriter, r *http.Request, errW *connect.ErrorWriter, ce *connect.Error, served int32) {
	tw := &trailersOnlyWriter{ResponseWriter: w, trailersOnly: true, served: served}
	_ = errW.Write(heldStatus{w}, r, ce)
	h := w.Header()
	for _, declared := range h["Trailer"] {
		for key := range strings.SplitSeq(declared, ",") {
			key = http.CanonicalHeaderKey(strings.TrimSpace(key))
			if v, ok := h[key]; ok {
				h[http.TrailerPrefix+key] = v
				delete(h, key)
			}
		}
	}
	delete(h, "Trailer")
	_ = tw.FlushError()
}

// heldStatus is a ResponseWriter whose WriteHeader(200), gRPC's, does
// nothing: net/http then writes 200 on the first flush, or when the
// handler returns. Another status goes through: connect's ErrorWriter
// answers a call it does not take for gRPC (not a POST, or a Content-Type
// neither application/grpc nor application/grpc+codec, which [grpcCall]
// lets through) as Connect JSON with the error's HTTP status, 401 say,
// which held back became a 200 whose body is an error.
type heldStatus struct{ http.ResponseWriter }

func (h heldStatus) WriteHeader(code int) {
	if code != http.StatusOK {
		h.ResponseWriter.WriteHeader(code)
	}
}

// protocolField says whether key, a canonical response header key, is
// one that connect or kit sets on every gRPC response, rather than the
// handler's metadata.
func protocolField(key string) bool {
	switch key {
	case "Content-Type", "Grpc-Accept-Encoding", "Grpc-Encoding", "Date", "X-Request-Id":
		return true
	}
	return false
}

// Push implements http.Pusher, which net/http's HTTP/2 writer has.
func (w *trailersOnlyWriter) Push(target string, opts *http.PushOptions) error {
	if w.done.Load() {
		return errHandlerReturned
	}
	if p, ok := w.ResponseWriter.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// Unwrap lets http.ResponseController reach net/http's writer (deadlines).
func (w *trailersOnlyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
