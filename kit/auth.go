package kit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"connectrpc.com/authn"
	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/health"
	"github.com/connectkit/connectkit/internal/connctx"
	"github.com/connectkit/connectkit/internal/requestid"
)

// WithAuth makes the server authenticate the callers of the services
// mounted on it with fn, before any of the call is read. A call whose fn
// returns an error is answered with that error in its protocol's own form
// (gRPC and gRPC-Web: a gRPC status; Connect: JSON with HTTP
// 401, or 403 for PermissionDenied; REST routes: google.rpc.Status JSON
// with the same HTTP status) and never reaches the interceptor chain or
// the handler. Off by default: every call is served.
//
// fn gets the call's context and its HTTP request, whose URL.Path is the
// procedure ("/example.v1.ProfileService/GetProfile") in every protocol,
// a REST route's call included, and whose Header holds the credentials
// (Authorization, cookies); r.TLS has a client certificate. It must be
// safe for concurrent use. It runs before the interceptor chain, so its
// ctx has neither the call's deadline nor its span: bound a remote lookup
// (token introspection) yourself. Return [authn.Errorf] (Unauthenticated) for
// missing or bad credentials, connect.NewError(connect.CodePermissionDenied, …)
// for a caller who may not call the procedure, or any other
// *connect.Error, whose message goes to the client and to the log: never
// put the credentials in it. An error that is not a *connect.Error (nor
// wraps one) is Unauthenticated with the message "unauthenticated": its
// text, which may name a token service's address or a library's
// internals, goes to the log alone. To make a procedure public, return nil, nil
// for its path before looking at credentials. A *connect.Error's metadata
// goes out as response headers (gRPC: trailers, but for the fields that
// RFC 9110 keeps out of trailers, WWW-Authenticate among them, which go in
// the header): set WWW-Authenticate on it, as RFC 9110 asks of a 401.
//
// What fn returns on success, when not nil, is the caller's information:
// the handler and the interceptors read it with [authn.GetInfo]. When it
// has a method Principal() string, the call's rpc log line carries that
// string as principal (say a user or client id, never a token); metrics
// get no label from it.
//
// The gRPC health service is never authenticated (Kubernetes' probes and
// grpc_health_probe send no credentials), nor are CORS preflights, which
// browsers send without them: with [Config.CORSAllowedOrigins] set, they
// are answered before any service. Server reflection is: it
// tells the API's shape, and grpcurl sends its -H headers on reflection
// calls too; make "/grpc.reflection." procedures public in fn to let
// every caller list the API. Package pubsub's deliveries do not go
// through fn: a message carries no credentials or caller (see README).
//
// It authenticates the services that [Server.Mount] recognizes, mounted
// at their "/pkg.Service/" path; a handler mounted at any other path (a
// plain net/http handler, the one at "/") is served as it is.
//
// A rejected call is logged at warn and counted in
// kit_rejected_calls_total, with its protocol and code, as the other calls
// answered before the chain are. A gRPC call over HTTP/2 whose client
// sends one message is refused once the first byte of that message has
// arrived (or a second passed), which kit discards: grpc-go's
// retryPolicy then gets the refusal's status (see [awaitMessage]). A panic in fn (but http.ErrAbortHandler's)
// refuses the call as Internal, "internal error" and nothing of the panic
// to the caller, as [interceptors.Recovery] answers a handler's, and its
// line has the panic's value and stack.
func WithAuth(fn func(ctx context.Context, r *http.Request) (any, error)) Option {
	return optionFunc(func(o *options) { o.auth = fn })
}

// authenticator is the authentication of [WithAuth] for the calls of one
// service's handler: [serviceHandler] runs its check before the handler.
//
// Written here rather than with authn.Middleware, which it mirrors: that
// middleware writes a rejection and tells nobody, and its AuthFunc takes
// an authn.Request that only authn can make, so kit could neither log and
// count a rejection with its code and message nor tell it from a call
// that connect rejected. It keeps authn's context key (authn.SetInfo, or
// [streamContext] for a stream), so that handlers read the caller with
// authn.GetInfo, and authn's error writer, connect's.
type authenticator struct {
	s    *Server
	fn   func(ctx context.Context, r *http.Request) (any, error)
	errW *connect.ErrorWriter
	rest bool // the calls that REST routes make
}

// authenticator returns the authentication of [WithAuth] for the handler
// of the service named service, or nil when there is none: no WithAuth,
// or the health service. rest says that the handler serves the calls
// that REST routes make.
func (s *Server) authenticator(service string, rest bool) *authenticator {
	if s.opts.auth == nil || service == health.ServiceName {
		return nil
	}
	return &authenticator{s: s, fn: s.opts.auth, errW: connect.NewErrorWriter(s.handler...), rest: rest}
}

// check returns the information of r's caller, which may be nil, and
// true; or, when fn refuses the caller, answers w with the refusal and
// returns false. oneMessage says that r's client sends one message (a
// unary call or a server stream).
func (a *authenticator) check(w http.ResponseWriter, r *http.Request, oneMessage bool) (any, bool) {
	var rb *refusableBody
	if a.rest {
		// A REST call served again without its body was let in once.
		if rb = refusableBodyOf(r.Context()); rb != nil && rb.authed {
			return rb.info, true
		}
	}
	info, err := callAuth(a.fn, r)
	if err != nil {
		if _, trailersOnly := grpcCall(r); trailersOnly && oneMessage && !a.rest {
			awaitMessage(w, r.Body)
		}
		a.s.rejectCall(w, r, err, a.errW, a.rest)
		return nil, false
	}
	if rb != nil {
		rb.authed, rb.info = true, info
	}
	return info, true
}

// awaitMessage waits for the first byte of body, the message of w's
// call, a gRPC call over HTTP/2 whose client sends one message, or for
// the body's end or error (the client's reset, the body timeout of
// [guardBody]), at most [messageWait], and discards it: nothing else of
// the call is read, and the handler never runs. It leaves the stream's
// read deadline set: only a refusal, which reads nothing more, waits.
//
// A refusal written before the client has handed its message to its
// transport ends the stream under it: grpc-go's client then fails to
// write the message (io.EOF), and when its retryPolicy has retried the
// refusal's status (an Unavailable of a token service down) as often as
// it may, v1.85 returns "max retries exhausted: failed after 3 attempts:
// EOF" instead of the status (stream.go, shouldRetry wraps the io.EOF
// that clientStreamWrapper.SendMsg would have turned into nil, so that
// RecvMsg returned the status). A byte of the message here means that the
// client has written it: grpc-go queues a message whole before sending
// any of it. A client stream's is not waited for: its client may wait
// for the response's header before it sends, and grpc-go gives its
// SendMsg's io.EOF to the caller, who reads the status with RecvMsg.
func awaitMessage(w http.ResponseWriter, body io.Reader) {
	if body == nil || body == http.NoBody {
		return
	}
	// A writer without deadlines (ErrNotSupported) leaves the wait to the
	// body timeout.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(messageWait))
	var b [1]byte
	_, _ = body.Read(b[:])
}

// messageWait bounds [awaitMessage]'s wait. The race it closes is with a
// client that has sent its header and is queuing its message at that
// moment (grpc-go's Invoke sends the one right after the other; a
// stream's SendMsg follows its NewStream): a fraction of a second even on
// a loaded machine. A client that holds its message back longer is
// refused at the cap, as before the wait (a grpc-go stream whose caller
// sends later may then end its retries with the EOF): the body timeout
// (KIT_CALL_TIMEOUT, 30s; none with the call timeouts off) let every
// refused call, an unauthenticated or over-limit client's, hold its
// stream and goroutine that long, which under overload is what the
// refusal is there to shed.
const messageWait = time.Second

// authnInfoKey is the context key under which authn.SetInfo puts a
// caller's information and authn.GetInfo looks for it, which authn does
// not export: the key that GetInfo asks a context for, once a context
// answering it was seen to give GetInfo its value. nil when not (an authn
// whose GetInfo asks its context otherwise): a stream's caller then goes
// in its context with authn.SetInfo, as a unary call's does, rather than
// being lost to the handlers, which would take the stream for a public
// method's.
var authnInfoKey = probeAuthnKey()

// probeAuthnKey returns the key that authn.GetInfo asks a context for,
// when a context answering it with a value makes GetInfo return that
// value; otherwise nil.
func probeAuthnKey() any {
	var p keyProbe
	authn.GetInfo(&p)
	if p.key == nil {
		return nil
	}
	mark := new(byte)
	if got, _ := authn.GetInfo(keyContext{key: p.key, value: mark}).(*byte); got != mark {
		return nil
	}
	return p.key
}

// keyContext is a context whose one value is value, under key.
type keyContext struct {
	context.Context
	key, value any
}

func (c keyContext) Value(key any) any {
	if key == c.key {
		return c.value
	}
	return nil
}

// keyProbe is a context that records the key it is asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	return nil
}

// callAuth returns fn's answer for r. A panic in fn, but
// http.ErrAbortHandler, which net/http expects to get, is an Internal
// error whose message says nothing of it, as [interceptors.Recovery] makes
// a handler's: rejectCall logs its value and stack. Left to net/http, it
// reset the call's stream (HTTP/1.1: closed its connection, which clients
// take for Unavailable and may retry), logged only by the server's error
// log and neither counted nor given its request id.
func callAuth(fn func(context.Context, *http.Request) (any, error), r *http.Request) (info any, err error) {
	defer func() {
		if p := recover(); p != nil {
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(p) //nolint:forbidigo // net/http's way to abort a response
			}
			info, err = nil, connect.NewError(connect.CodeInternal, &authPanic{value: fmt.Sprint(p), stack: string(debug.Stack())})
		}
	}()
	return fn(r.Context(), r)
}

// errUnauthenticated is what the caller of a call refused with an error
// that is not a *connect.Error is told.
var errUnauthenticated = errors.New("unauthenticated")

// authPanic is a panic in [WithAuth]'s func, recovered by callAuth.
type authPanic struct {
	value, stack string
}

// Error is what the caller gets: nothing of the panic.
func (e *authPanic) Error() string { return "internal error" }

// rejectCall answers r, refused before the chain with err (a caller
// that [WithAuth]'s func did not authenticate, a call that
// [Config.MaxInFlightBytes] had no room for), and observes it as a
// rejected call (see [rejectedCalls]). An err that is no connect error
// is an authentication's, answered as Unauthenticated. With kit's
// request ids on, the response carries the call's id, which the rejected
// line names; the routes, which also observe the calls answered before
// the chain, then take it for one that reached the chain and do not
// observe it again.
func (s *Server) rejectCall(w http.ResponseWriter, r *http.Request, err error, errW *connect.ErrorWriter, rest bool) {
	// The server's fields, before the refusal's (see [trailersOnlyWriter]).
	served := serverFields(w.Header())
	var ce *connect.Error
	logged := ""
	if !errors.As(err, &ce) {
		// Its text may name what the caller must not see (a token
		// service's address, a library's internals): the log has it.
		ce = connect.NewError(connect.CodeUnauthenticated, errUnauthenticated)
		logged = err.Error()
	} else {
		logged = ce.Message()
	}
	if s.routes.echoIDs {
		// Over HTTP/1.x the routes have written the id already; this marks
		// the call as seen.
		if _, ok := connctx.EchoedRequestID(r.Context(), r.Header); !ok {
			w.Header()[requestid.Header] = []string{requestid.Server(r.Header.Get(requestid.Header))}
		}
	}
	protocol := protocolREST
	if !rest {
		protocol = protocolOf(r.Header.Get("Content-Type"))
	}
	switch protocolOf(r.Header.Get("Content-Type")) {
	case connect.ProtocolGRPC:
		ce = headerFieldsFirst(w.Header(), ce)
	case connect.ProtocolConnect, connect.ProtocolGRPCWeb: // gRPC-Web's is trailers-only, in the header
		// A REST call's too: vanguard sends the Connect error's header on.
		ce = connectFields(w.Header(), ce)
	}
	if _, trailersOnly := grpcCall(r); trailersOnly && !rest {
		writeTrailersOnly(w, r, errW, ce, served)
	} else {
		_ = errW.Write(w, r, ce)
	}
	if l, ok := (*s.rejected.procedures.Load())[r.URL.Path]; ok {
		var attrs []slog.Attr
		if p, isPanic := ce.Unwrap().(*authPanic); isPanic {
			attrs = []slog.Attr{slog.String("panic", p.value), slog.String("stack", p.stack)}
		}
		s.rejected.record(l, protocol, ce.Code(), logged, true, w.Header(), r, attrs...)
	}
}
