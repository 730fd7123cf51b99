package kit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/authn"
	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The standard reflection descriptors, so that reflection lists and
	// describes its own services as grpc-go servers do (connect's
	// grpcreflect registers its copies under another package name).
	_ "google.golang.org/grpc/reflection/grpc_reflection_v1"
	_ "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/connectkit/connectkit/health"
	"github.com/connectkit/connectkit/internal/header"
)

// Mount serves h under the path pattern, in the (path, handler) shape that
// generated connect constructors return:
//
//	srv.Mount(examplev1connect.NewProfileServiceHandler(svc, srv.HandlerOptions()...))
//
// When path names a protobuf service ("/example.v1.ProfileService/"), gRPC
// server reflection lists it and the gRPC health service reports its status
// (see [Server.Health]); and if its methods have REST routes (the
// google.api.http option: `get: "/v1/profiles/{id}"`), s serves them too,
// on the same port, through the handler and so kit's whole chain: a REST
// call is a call of its method in logs, metrics and traces. A path that
// another handler is mounted at is that handler's, not a route's. Mount
// panics if the routes are malformed, conflict with another service's or
// give a get a body, as it does on a path already taken. Any other
// net/http handler mounts too; one mounted at "/" gets the requests no
// other path (or REST route) matches, which otherwise get an
// Unimplemented error in their RPC protocol (or a plain 404).
func (s *Server) Mount(path string, h http.Handler) {
	if path == "/" { // the mux's "/" answers unknown procedures until then
		s.unknown.root.Store(&h)
		return
	}
	service := serviceOf(path)
	if service == nil {
		s.routes.handle(path, h, false)
		return
	}
	if err := checkGetBodies(service); err != nil {
		panic("kit: " + err.Error())
	}
	unknown := s.unknown.calls.of(string(service.FullName()))
	limits := bodyLimits{
		timeout: s.bodyTimeout(), maxTimeout: s.maxBodyTimeout(),
		call: s.cfg.CallTimeout, maxCall: s.cfg.MaxCallTimeout,
		maxBytes: s.cfg.MaxRequestBytes, sendStall: s.sendStall,
		echoIDs: s.routes.echoIDs,
	}
	name := string(service.FullName())
	s.routes.handle(path, serviceHandler(service, h, s.authenticator(name, false), unknown, s.withBytes(limits, service, false)), true)
	if hasHTTPRules(service) {
		s.unknown.rest.add(service, serviceHandler(service, transcodedBody(service, h), s.authenticator(name, true), unknown, s.withBytes(limits, service, true)),
			s.cfg.MaxRequestBytes, s.cfg.MaxResponseBytes, s.cfg.ReadHeaderTimeout, http.HandlerFunc(s.unknown.unrouted))
	}
	s.rejected.add(service)
	s.reflector.add(name)
	if !strings.HasPrefix(name, "grpc.reflection.") && name != health.ServiceName {
		s.health.AddService(name)
	}
}

// serviceOf returns the protobuf service that path serves, or nil when it
// names none registered in the global registry.
func serviceOf(path string) protoreflect.ServiceDescriptor {
	if !strings.HasSuffix(path, "/") { // "/pkg.Service" serves that path alone
		return nil
	}
	name := strings.Trim(path, "/")
	if name == "" || strings.Contains(name, "/") {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil
	}
	service, _ := d.(protoreflect.ServiceDescriptor)
	return service
}

// serviceHandler wraps h, the handler of service, so that a method it does
// not have is Unimplemented in the call's protocol (generated handlers
// answer net/http's text 404); so that a call whose client sends one
// message gets that message's body within bodyTimeout, when positive (see
// [guardBody]); so that [deadlines] can bound the reads and writes
// of streams: connect shows interceptors no ResponseWriter, so a stream's
// ResponseController goes to them in the request context ([streamContext]);
// so that auth, when not nil, authenticates the calls of its methods
// before h runs (see [WithAuth]), and before the call reserves its
// message's bytes under [Config.MaxInFlightBytes]; and so that a gRPC call
// that fails before its first message ends in a Trailers-Only response
// (see [trailersOnlyWriter]).
func serviceHandler(service protoreflect.ServiceDescriptor, h http.Handler, auth *authenticator, unknown prometheus.Counter, limits bodyLimits) http.Handler {
	kinds := map[string]connect.StreamType{} // by path
	methods := service.Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		var kind connect.StreamType
		if m.IsStreamingClient() {
			kind |= connect.StreamTypeClient
		}
		if m.IsStreamingServer() {
			kind |= connect.StreamTypeServer
		}
		kinds["/"+string(service.FullName())+"/"+string(m.Name())] = kind
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, ok := kinds[r.URL.Path]
		if !ok {
			unimplemented(w, r, unknown, true)
			return
		}
		// The writer of a gRPC or gRPC-Web call, in a stream's context,
		// which the call allocates anyway: one allocation fewer a call.
		// (A unary call's body timer, which is reused, cannot hold it.)
		var tw *trailersOnlyWriter
		// The bound on request bytes read at once, for a call whose body
		// it counts; nil otherwise (and when off).
		var inBytes *requestBytes
		var timeout time.Duration
		switch {
		case kind&connect.StreamTypeClient == 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody:
			if kind == connect.StreamTypeUnary && r.ContentLength > limits.maxBytes && connectUnaryBody(r) {
				// The body is the message and says it is too large:
				// connect would read all of it just to report its size.
				tooLarge(w, r.ContentLength, limits.maxBytes)
				return
			}
			caller, ok := callerTimeout(r.Header)
			timeout = limits.bodyTimeout(caller, ok)
			if timeout > 0 {
				var stall time.Duration
				if kind == connect.StreamTypeUnary {
					if response := limits.responseTime(caller, ok); response > 0 {
						stall = max(response-timeout, limits.sendStall)
					}
				}
				defer guardBody(w, r, timeout, stall).release()
			}
			if limits.bytes != nil && !limits.bodyless[r.URL.Path] {
				inBytes = limits.bytes
			}
		case kind == connect.StreamTypeUnary: // a Connect GET, whose message is in the URL
			if response := limits.responseTime(callerTimeout(r.Header)); response > 0 {
				defer guardResponse(w, r, response).release()
			}
		}
		// WithAuth refuses a caller before the call reserves its bytes:
		// it reads only the headers (a gRPC refusal waits for the
		// message's first byte, see [awaitMessage], and reads no more),
		// so an unauthenticated call neither waits in the bound's queue
		// ahead of authenticated ones nor is told ResourceExhausted.
		var info any
		if auth != nil {
			var ok bool
			if info, ok = auth.check(w, r, kind&connect.StreamTypeClient == 0); !ok {
				return
			}
		}
		if inBytes != nil {
			n, held, refusal := inBytes.reserve(r, limits.maxBytes, timeout)
			if refusal != nil {
				limits.reject(w, held, refusal)
				return
			}
			defer inBytes.release(n)
			r = held
		}
		if kind != connect.StreamTypeUnary {
			c := &streamContext{Context: r.Context(), body: streamBody{rc: http.NewResponseController(w), sendStall: limits.sendStall}}
			defer c.body.release()
			tw = &c.grpc
			r = r.WithContext(c)
			if _, trailersOnly := grpcCall(r); trailersOnly && kind == connect.StreamTypeServer && r.Body != nil && r.Body != http.NoBody {
				// See [trailersOnlyWriter.message].
				c.message.ReadCloser = r.Body
				r.Body, tw.message = &c.message, &c.message
			}
			// The caller's info rides on the stream's context, which the
			// request's copy above carries already; when kit did not
			// learn authn's key, on a context of authn's.
			if authnInfoKey != nil {
				c.info = info
			} else if info != nil {
				r = r.WithContext(authn.SetInfo(c, info))
			}
		} else if info != nil {
			r = r.WithContext(authn.SetInfo(r.Context(), info))
		}
		if ok, trailersOnly := grpcCall(r); ok {
			serveGRPC(h, w, r, tw, trailersOnly, limits.echoIDs && kind == connect.StreamTypeUnary)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// streamContext is the context of a stream mounted by [Server.Mount]: it
// carries the stream's [streamBody], under bodyControllerKey, and the
// caller's information that [WithAuth]'s func returned, under authn's
// key (authn.GetInfo), when not nil. One allocation, with the body's,
// where the body, its context.WithValue and an authenticated stream's
// authn.SetInfo and second copy of the request took four more.
type streamContext struct {
	context.Context
	body streamBody
	info any
	grpc trailersOnlyWriter // the stream's writer, when it is gRPC or gRPC-Web
	// message is the body of a server stream of gRPC over HTTP/2, its
	// client's one message.
	message messageBody
}

func (c *streamContext) Value(key any) any {
	switch key {
	case bodyControllerKey{}:
		return &c.body
	case authnInfoKey:
		if c.info != nil {
			return c.info
		}
	}
	return c.Context.Value(key)
}

// bodyLimits bound what a service's request bodies, and the responses
// that wait on their clients, may cost.
type bodyLimits struct {
	timeout    time.Duration // for the body of a call whose client sends one message and sets no deadline; 0: none
	maxTimeout time.Duration // the longest a client's deadline may give that body; 0: no cap
	call       time.Duration // CallTimeout: a unary call's deadline when its client sets none; <= 0: none
	maxCall    time.Duration // MaxCallTimeout: the cap on a unary call's deadline; <= 0: none
	maxBytes   int64         // MaxRequestBytes
	sendStall  time.Duration // see sendGuard
	bytes      *requestBytes // MaxInFlightBytes; nil: off
	echoIDs    bool          // kit's chain has RequestID: see [serveGRPC]
	reject     func(http.ResponseWriter, *http.Request, *connect.Error)
	// bodyless holds, for REST calls, the procedures whose routes all
	// take no body: a body sent to them is never read (it is dropped, or
	// refused and the call served again without it), so they reserve
	// nothing for it.
	bodyless map[string]bool
}

// withBytes returns l with the server's bound on request bytes read at
// once, if on, and the refusal of a call it has no room for; rest says
// that l's handler serves the calls of REST routes. The gRPC health
// service and reflection are exempt, as from the other overload limits:
// a probe refused under load would have the instance restarted.
func (s *Server) withBytes(l bodyLimits, service protoreflect.ServiceDescriptor, rest bool) bodyLimits {
	if name := string(service.FullName()); s.inBytes == nil || name == health.ServiceName || strings.HasPrefix(name, "grpc.reflection.") {
		return l
	}
	l.bytes = s.inBytes
	errW := connect.NewErrorWriter(s.handler...)
	l.reject = func(w http.ResponseWriter, r *http.Request, ce *connect.Error) {
		s.rejectCall(w, r, ce, errW, rest)
	}
	if rest {
		l.bodyless = bodylessProcedures(service)
	}
	return l
}

// bodylessProcedures returns the procedures of service none of whose
// REST routes takes a request body.
func bodylessProcedures(service protoreflect.ServiceDescriptor) map[string]bool {
	procedures := map[string]bool{}
	methods := service.Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		if !slices.ContainsFunc(httpRules(m), func(r *annotations.HttpRule) bool { return r.GetBody() != "" }) {
			procedures["/"+string(service.FullName())+"/"+string(m.Name())] = true
		}
	}
	return procedures
}

// bodyTimeout is how long the body of a call whose client sends one
// message may take to arrive: the call's own timeout t when its client set
// one (ok; a client that asks for two minutes to upload gets them), capped
// at maxTimeout; otherwise the default. t and ok are [callerTimeout]'s.
func (l bodyLimits) bodyTimeout(t time.Duration, ok bool) time.Duration {
	if !ok {
		return l.timeout
	}
	if l.maxTimeout > 0 {
		return min(t, l.maxTimeout)
	}
	return t
}

// responseTime is how long a unary call may take, its response written
// (see [bodyTimer]): the call's deadline, as [deadlines] sets it, and the
// stall timeout of a stream's Send. A call without a deadline gets no
// bound (0). call and ok are [callerTimeout]'s.
func (l bodyLimits) responseTime(call time.Duration, ok bool) time.Duration {
	switch {
	case ok && l.maxCall > 0:
		call = min(call, l.maxCall)
	case !ok && l.call > 0:
		call = l.call
	case !ok:
		return 0
	}
	return call + l.sendStall
}

// callerTimeout reads the timeout a client set on its call, in gRPC's and
// gRPC-Web's Grpc-Timeout or Connect's Connect-Timeout-Ms header, as
// connect parses them. A missing, malformed or non-positive one is none:
// connect answers a malformed one itself.
func callerTimeout(h http.Header) (time.Duration, bool) {
	// Indexed by their canonical names: Header.Get would canonicalize them
	// first, on every call.
	if v := header.Get(h, "Grpc-Timeout"); v != "" {
		if len(v) < 2 || len(v) > 9 {
			return 0, false
		}
		n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
		unit, ok := grpcTimeoutUnits[v[len(v)-1]]
		if err != nil || !ok || n <= 0 || n > math.MaxInt64/int64(unit) {
			return 0, false // too long to count is none, as connect has it
		}
		return time.Duration(n) * unit, true
	}
	if v := header.Get(h, "Connect-Timeout-Ms"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || len(v) > 10 || n <= 0 {
			return 0, false
		}
		return time.Duration(n) * time.Millisecond, true
	}
	return 0, false
}

var grpcTimeoutUnits = map[byte]time.Duration{
	'H': time.Hour, 'M': time.Minute, 'S': time.Second,
	'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond,
}

// connectUnaryBody says whether r is a Connect unary call whose body is its
// message, uncompressed: a POST that is not gRPC, gRPC-Web or a Connect
// stream (which frame their messages), with no Content-Encoding. The
// content type is compared as connect serves it, without regard to case
// or to spaces before it.
func connectUnaryBody(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return false
	}
	ct := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type")))
	return !strings.HasPrefix(ct, "application/grpc") && !strings.HasPrefix(ct, "application/connect+")
}

// tooLarge answers a Connect unary call whose Content-Length exceeds the
// limit, as connect would once it had read it all, and notes its status
// for the rejected line (see [noteStatus]).
func tooLarge(w http.ResponseWriter, size, limit int64) {
	msg := fmt.Sprintf("request body of %d bytes exceeds the %d-byte limit (KIT_MAX_REQUEST_BYTES)", size, limit)
	body, _ := json.Marshal(map[string]string{"code": "resource_exhausted", "message": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests) // the Connect protocol's status for resource_exhausted
	_, _ = w.Write(body)
	noteStatus(w.Header(), connect.CodeResourceExhausted, msg)
}

// bodyTimeout is how long a request body a client sends as one message may
// take to arrive when the client sets no deadline: the default call
// deadline, or the longest one allowed if there is no default.
func (s *Server) bodyTimeout() time.Duration {
	if s.cfg.CallTimeout > 0 {
		return s.cfg.CallTimeout
	}
	return max(s.cfg.MaxCallTimeout, 0)
}

// maxBodyTimeout is the longest a client's own deadline may give such a
// body: the cap on unary deadlines, or, when that is off, the time a body
// gets when the client sets no deadline. An operator who lets calls run as
// long as their clients ask has not let a client that withholds its body
// hold the call's goroutine and connection that long.
func (s *Server) maxBodyTimeout() time.Duration {
	if s.cfg.MaxCallTimeout > 0 {
		return s.cfg.MaxCallTimeout
	}
	return s.bodyTimeout()
}

// reflection serves gRPC server reflection (v1 and v1alpha) for every
// mounted service, so grpcurl and buf curl work without proto files.
type reflection struct {
	mu    sync.Mutex
	names []string
}

func (s *Server) mountReflection() {
	reflector := grpcreflect.NewReflector(s.reflector)
	// Open streams end at shutdown, as health Watch streams do.
	streams := &reflectionStreams{}
	s.http.RegisterOnShutdown(streams.close)
	opts := append(slices.Clone(s.handler), connect.WithInterceptors(streams))
	s.Mount(grpcreflect.NewHandlerV1(reflector, opts...))
	s.Mount(grpcreflect.NewHandlerV1Alpha(reflector, opts...))
}

func (r *reflection) add(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.names, name) {
		r.names = append(r.names, name)
		slices.Sort(r.names)
	}
}

// Names implements grpcreflect.Namer.
func (r *reflection) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.names)
}
