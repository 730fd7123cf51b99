// Package kit serves [connectrpc.com/connect] services in production: one
// [Server] answers gRPC, gRPC-Web, Connect and REST on one port.
//
// It serves gRPC, gRPC-Web and Connect (JSON and binary) over HTTP/1.1 and
// cleartext HTTP/2 (h2c) or TLS, and the REST routes that services declare
// with google.api.http (see [Server.Mount]). Built in: hardened limits and
// deadlines, request validation, the default interceptor chain of package
// [interceptors] (logs, Prometheus metrics, OpenTelemetry traces, request
// ids, panic recovery), gRPC server reflection, the gRPC health protocol fed
// by [Server.Health], the authentication of callers by a func of yours
// ([WithAuth]), an admin listener (metrics, pprof, log level, probes) and a
// graceful, drain-aware shutdown of the server and of its background
// components.
//
// Start with [ConfigFromEnv], [New], [Server.Mount] and [Server.Run]; the
// wiring stays explicit, in func main:
//
//	cfg, err := kit.ConfigFromEnv()
//	srv, err := kit.New(cfg)
//	srv.Mount(examplev1connect.NewProfileServiceHandler(svc, srv.HandlerOptions()...))
//	err = srv.Run(ctx) // until SIGINT/SIGTERM or ctx is done, then a graceful shutdown
//
// [Config] documents every setting and its KIT_* variable,
// [Server.ClientOptions] and [Server.HTTPClient] call other services through
// the same chain, and [Server.Go] runs background work (pubsub subscribers)
// under the server's lifecycle. The README's sections "Add a service, step by
// step" and "Configuration" walk through a whole service:
// https://github.com/connectkit/connectkit#add-a-service-step-by-step
package kit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/health"
	"github.com/connectkit/connectkit/internal/admin"
	"github.com/connectkit/connectkit/internal/telemetry"
)

// Server serves mounted connect handlers under one lifecycle with the
// background components started by [Server.Go]. Create it with [New]; its
// methods are safe for concurrent use.
type Server struct {
	cfg    Config
	opts   options
	logger *slog.Logger
	level  *slog.LevelVar

	routes       *routes
	http         *http.Server
	handlers     sync.WaitGroup // the main listener's handlers running
	draining     atomic.Bool    // set at shutdown: HTTP/1.x responses close their connection
	fresh        freshConns     // the main listener's connections, for the shutdown to close the silent ones
	freshAdmin   freshConns     // the admin listener's connections that have sent no request
	tls          bool           // the main listener serves TLS
	admin        *http.Server   // nil when AdminAddr is AdminOff
	adminHandler *admin.Handler
	registry     *prometheus.Registry
	health       *health.Checker
	reflector    *reflection
	telemetry    *telemetry.Provider
	notify       *notifier // nil when systemd is not told (see notifier)

	serverChain, clientChain []connect.Interceptor
	handler                  []connect.HandlerOption
	client                   []connect.ClientOption

	mu        sync.Mutex
	ln        net.Listener
	adminLn   net.Listener
	actors    []func(context.Context) error
	running   bool
	closed    bool          // by Close: Listen, and so Run, refuse to start
	closeDone bool          // Close, or Run's shutdown, did all it does: a later Close returns nil
	flushed   chan struct{} // made by the first Close, closed once it has flushed the traces
	lifecycle *lifecycle
	stopping  chan struct{} // closed when the server stops accepting calls
	// calls is the context every call's derives from (http.Server's
	// BaseContext); cutCalls cancels it, with errCallsCut, at the shutdown
	// timeout.
	calls     context.Context
	cutCalls  context.CancelCauseFunc
	unknown   unknownPaths   // the mux's "/": what no other path matches
	rejected  *rejectedCalls // the calls answered without the chain
	inBytes   *requestBytes  // Config.MaxInFlightBytes; nil: off
	sendStall time.Duration  // sendStallTimeout; shorter in tests
	cutGrace  time.Duration  // closeGrace; longer in tests (see cutCallsAndClose)

	clientTLS        *tls.Config // of HTTPClient's https:// connections; nil: the defaults
	httpClientMu     sync.Mutex
	httpClient       *balancedClient // made by the first HTTPClient call
	clientMetrics    clientMetrics   // of httpClient's ejections
	conns            connMetrics     // of the main listener's connections
	httpClientClosed bool            // set by the shutdown
}

// New returns a server for cfg (defaults applied, then validated) and opts.
// It binds nothing: [Server.Listen] or [Server.Run] does. It logs, at info,
// one line "config" naming connectkit's version and the settings of cfg
// that differ from the defaults (the admin token redacted), and at warn
// each misspelt KIT_* variable of a Config from [ConfigFromEnv].
func New(cfg Config, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := newServer(cfg, opts)
	if err != nil {
		if s != nil && s.telemetry != nil {
			// Set up before the failure: its exporters hold goroutines
			// and connections until shut down.
			_ = s.telemetry.Shutdown(context.Background())
		}
		return nil, err
	}
	return s, nil
}

// chainBuildWarning is how long New builds its chain before it logs, at
// error, what may hold it for good: protovalidate's validator, whose
// build holds protoregistry.GlobalFiles' read lock while it reads it
// again, so that a registration from another goroutine in between blocks
// both (see interceptors.Validation). No lock of kit's can prevent it:
// the registration does not go through kit. The build takes a few ms.
var chainBuildWarning = 10 * time.Second

// newServer is New once cfg is valid. It returns the server even with an
// error, so that New can release what it had set up.
func newServer(cfg Config, opts []Option) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, routes: newRoutes(), stopping: make(chan struct{}), sendStall: sendStallTimeout, cutGrace: closeGrace}
	s.calls, s.cutCalls = context.WithCancelCause(context.Background())
	for _, o := range opts {
		o.apply(&s.opts)
	}
	if s.opts.clientAddrsErr != nil {
		return s, s.opts.clientAddrsErr
	}
	s.level = s.opts.level
	if s.level == nil {
		s.level = new(slog.LevelVar)
		s.level.Set(cfg.LogLevel)
	}
	s.logger = s.opts.logger
	if s.logger == nil {
		s.logger = NewLogger(os.Stderr, cfg.LogFormat, s.level)
	}
	warnUnknownEnv(s.logger, cfg.unknownEnv)
	s.logConfig(cfg)
	s.registry = s.opts.registry
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	admin.RegisterRuntimeCollectors(s.registry)
	var err error
	if s.unknown.calls, err = newUnknownCalls(s.registry); err != nil {
		return s, err
	}
	s.unknown.rest.logger = s.logger
	s.inBytes = newRequestBytes(s.cfg.MaxInFlightBytes)
	s.unknown.rest.sentLength = s.inBytes != nil
	if s.rejected, err = newRejectedCalls(s.registry, s.logger); err != nil {
		return s, err
	}
	if s.clientMetrics, err = newClientMetrics(s.registry); err != nil {
		return s, err
	}
	if s.conns, err = newConnMetrics(s.registry); err != nil {
		return s, err
	}
	bi, ok := debug.ReadBuildInfo()
	if err = registerBuildInfo(s.registry, bi, ok); err != nil {
		return s, err
	}
	s.health = health.New(health.WithLogger(s.logger))
	s.notify = newNotifier(cfg, s.logger, s.health)
	if err := s.buildChainsWatched(); err != nil {
		return s, err
	}
	// gzip replaces connect's own, which inflates a message over the limit
	// to its end just to report its size: a gzip bomb then costs the CPU
	// of all it inflates to (see compress.go).
	s.handler = []connect.HandlerOption{
		connect.WithInterceptors(s.serverChain...),
		connect.WithReadMaxBytes(int(cfg.MaxRequestBytes)),
		connect.WithSendMaxBytes(int(cfg.MaxResponseBytes)),
		withBoundedGzip(cfg.MaxRequestBytes),
		connect.WithCompressMinBytes(compressMinBytes),
	}
	s.handler = append(s.handler, handlerCodecs...) // errors that name no Go type
	s.client = []connect.ClientOption{
		connect.WithInterceptors(s.clientChain...),
		connect.WithReadMaxBytes(int(cfg.MaxResponseBytes)),
		connect.WithSendMaxBytes(int(cfg.MaxRequestBytes)),
		acceptBoundedGzip(cfg.MaxResponseBytes),
		connect.WithCompressMinBytes(compressMinBytes),
	}
	if s.clientTLS, err = cfg.HTTPClient.clientTLS(s.logger); err != nil {
		return s, err
	}
	if s.http, err = s.newHTTPServer(); err != nil {
		return s, err
	}
	// Open Watch streams of the health service end at shutdown (after
	// sending NOT_SERVING) instead of holding it until its timeout.
	s.tls = s.http.TLSConfig != nil
	s.http.RegisterOnShutdown(s.health.CloseWatches)
	if cfg.AdminAddr != AdminOff {
		if s.admin, err = s.newAdminServer(); err != nil {
			return s, err
		}
	}
	s.routes.handle("/", &s.unknown, false)
	s.routes.unclean = func(w http.ResponseWriter, r *http.Request) bool { return s.unknown.serveUnclean(w, r, s.routes.mux) }
	s.reflector = &reflection{}
	s.mountReflection()
	s.Mount(health.NewHandler(s.health, s.handler...))
	return s, nil
}

// compressMinBytes: messages smaller than this are sent uncompressed even
// when the peer accepts gzip; compressing tiny messages costs more CPU than
// it saves bytes.
const compressMinBytes = 1024

// HandlerOptions returns the options every handler mounted on s should be
// built with: the interceptor chain, the message size limits, gzip bounded
// by the request limit, the compression threshold, and connect's protobuf
// and JSON codecs with errors that name no Go type. Pass them to the
// generated constructor:
//
//	srv.Mount(examplev1connect.NewProfileServiceHandler(svc, srv.HandlerOptions()...))
//
// An option of yours that sets the same thing (a connect.WithCodec for
// "proto" or "json") goes after them, where connect lets the last one win.
func (s *Server) HandlerOptions() []connect.HandlerOption {
	return append([]connect.HandlerOption(nil), s.handler...)
}

// ClientOptions returns the options for clients this service uses to call
// others. They hold the client side of the interceptor chain and the same
// message size limits, with gzip responses inflated no further than the
// response limit. With [Config.ClientRetry] on, idempotent unary calls that
// fail with one of its Codes (Unavailable by default), and calls whose
// connection was refused, are retried ([interceptors.Retry]), with a retry
// budget per address shared by every client built with these options. With
// [Config.ClientBreaker] on, the chain ends in a circuit breaker per address
// and procedure called ([interceptors.CircuitBreaker]), also shared, which sees
// each attempt. Innermost, each attempt's outcome is reported to the address of
// [Server.HTTPClient] (any server's) that it reached, for its outlier ejection.
func (s *Server) ClientOptions() []connect.ClientOption {
	return append([]connect.ClientOption(nil), s.client...)
}

// Logger returns the server's logger.
func (s *Server) Logger() *slog.Logger { return s.logger }

// LogLevel returns the level variable the server's logger reads; setting it
// changes the level at run time.
func (s *Server) LogLevel() *slog.LevelVar { return s.level }

// Go runs fn as a background component under the server's lifecycle (a
// pubsub subscriber, a cache refresher). It starts when [Server.Run] starts
// (at once if Run is already running), its ctx is cancelled at shutdown once
// in-flight calls have finished, and Run waits for it to return (up to
// [Config.ShutdownTimeout] from then). If fn
// returns an error before shutdown, the whole server shuts down and Run
// returns that error.
func (s *Server) Go(fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actors = append(s.actors, fn)
	if s.running {
		s.startActor(fn)
	}
}

// ShuttingDown returns a channel closed when the server stops accepting
// calls at shutdown. Long-lived streaming handlers select on it to end their
// streams cleanly, so that the shutdown does not wait for them until
// [Config.ShutdownTimeout].
func (s *Server) ShuttingDown() <-chan struct{} { return s.stopping }

// Listen binds the main and admin listeners, so that [Server.Addr] and
// [Server.AdminAddr] report the bound addresses (useful with port 0).
// [Server.Run] calls it if it has not been called. When systemd passed
// listening sockets (socket activation: LISTEN_FDS for this process's
// LISTEN_PID), it serves on them instead of binding Addr and AdminAddr:
// the one named "main" (FileDescriptorName=), or else the first, is the
// main listener; the one named "admin", or else the second, the admin
// listener.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listenLocked()
}

// listenLocked is Listen; the caller holds s.mu. Run calls it under the
// lock it marks the server running with, so that a Close cannot come in
// between.
func (s *Server) listenLocked() error {
	if s.closed {
		return errors.New("kit: Run or Listen after Close")
	}
	if s.ln != nil {
		return nil
	}
	ln, adminLn, err := activatedListeners(s.cfg)
	if err != nil {
		return err
	}
	if adminLn != nil && s.admin == nil {
		closeAll(ln, adminLn)
		return errors.New("kit: socket activation: an admin socket was passed, and KIT_ADMIN_ADDR is off")
	}
	if ln != nil {
		s.logger.Info("serving on a socket systemd passed (socket activation): KIT_ADDR is not used", "addr", ln.Addr().String())
	} else if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
		closeAll(nil, adminLn)
		return fmt.Errorf("kit: listen on %s (KIT_ADDR): %w", s.cfg.Addr, err)
	}
	if ln, err = s.batching(ln); err != nil {
		closeAll(nil, adminLn)
		return err
	}
	if adminLn != nil {
		s.logger.Info("serving the admin endpoints on a socket systemd passed: KIT_ADMIN_ADDR is not used", "addr", adminLn.Addr().String())
	} else if s.admin != nil {
		if adminLn, err = net.Listen("tcp", s.cfg.AdminAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("kit: listen on %s (KIT_ADMIN_ADDR): %w", s.cfg.AdminAddr, err)
		}
	}
	s.ln, s.adminLn = ln, adminLn
	return nil
}

// Addr returns the main listener's address, or nil before [Server.Listen].
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// AdminAddr returns the admin listener's address, or nil before
// [Server.Listen] or when the admin listener is off.
func (s *Server) AdminAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// Run serves until ctx is done or the process gets SIGINT or SIGTERM, then
// shuts down gracefully. It stops accepting, lets in-flight calls and open
// streams finish (up to [Config.ShutdownTimeout]), then stops the
// background components (up to as long again). It waits for every handler,
// also those of calls their clients cancelled, which net/http's HTTP/2
// server no longer tracks; past the timeout it cancels the handlers'
// contexts (their calls end with Unavailable) and closes the connections,
// within one more second. A second signal during shutdown exits at once,
// by that signal, after logging so at error: a SIGINT (a second ^C) at
// any time, a SIGTERM a second or more after the first signal (one
// sooner is taken for the first delivered twice). A first signal during
// a shutdown that a failure or ctx began is logged and changes nothing.
// Run returns nil after a clean shutdown, and otherwise the error that
// stopped the server or spoiled its shutdown.
func (s *Server) Run(ctx context.Context) error {
	// Run listens to the signals itself, from start to end, rather than
	// through a signal.NotifyContext: whether a signal began the shutdown
	// decides what the next one does, which no context's cause tells (func
	// main's own NotifyContext may cancel ctx before kit's would).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("kit: Run called twice")
	}
	if err := s.listenLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.running = true
	s.lifecycle = newLifecycle(context.WithoutCancel(ctx))
	s.startActor(s.health.Run) // background health checks
	for _, fn := range s.actors {
		s.startActor(fn)
	}
	ln, adminLn := s.ln, s.adminLn
	s.mu.Unlock()

	go func() {
		if err := s.serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.lifecycle.fail(fmt.Errorf("kit: serve %s: %w", ln.Addr(), err))
		}
	}()
	attrs := []any{"addr", ln.Addr().String(), "tls", s.tls}
	if adminLn != nil {
		go func() {
			if err := s.admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.lifecycle.fail(fmt.Errorf("kit: serve admin %s: %w", adminLn.Addr(), err))
			}
		}()
		attrs = append(attrs, "admin", adminLn.Addr().String())
	}
	s.logger.Info("serving", attrs...)
	s.notify.start(ln.Addr().String())

	var cause error
	var first os.Signal // the signal that began the shutdown, if one did
	var reason string
	select {
	case first = <-sigs:
		reason = first.String() + " signal received"
		s.logger.Info("shutdown requested", "reason", reason)
	case <-ctx.Done():
		select { // the signal that made func main cancel ctx, if it did
		case first = <-sigs:
		default:
		}
		reason = context.Cause(ctx).Error()
		s.logger.Info("shutdown requested", "reason", reason)
	case cause = <-s.lifecycle.failed:
		reason = "a background component failed"
		s.logger.Error("shutting down after a failure", "error", cause)
	}
	defer s.exitOnSecondSignal(sigs, first != nil)() // from here on, a second signal kills the process
	err := s.shutdown(cause, reason)
	s.mu.Lock()
	s.closed, s.closeDone = true, true // the shutdown did what Close does: a later Close returns nil
	s.mu.Unlock()
	return err
}
