// Package health is connectkit's health model: one [Checker] that feeds gRPC
// health, /readyz and /healthz.
//
// Checks registered explicitly
// ([Check]) and background components that report their own state
// ([Reporter]) decide the serving status of each service and of the whole
// server (""), and that one model feeds the gRPC health protocol
// grpc.health.v1 ([NewHandler]: Check, List and Watch), the readiness
// endpoint /readyz ([Checker.ReadyHandler]) and the liveness endpoint
// /healthz ([Checker.LiveHandler]).
//
// A service is SERVING unless the server is shutting down ([Checker.Shutdown])
// or a critical readiness check of that service, or of the whole server, is
// failing or has not passed yet. The whole server ("") is SERVING unless
// shutting down or any critical readiness check is failing. Non-critical
// checks are reported and logged but change no status. Liveness checks
// decide /healthz alone: readiness never affects liveness.
//
// In a kit service, kit's Server.Health returns the server's Checker, which it
// serves, runs and shuts down: register checks on it with [Checker.AddCheck]
// (see [PingCheck] for a database) and components with [Checker.AddReporter].
// Without kit, create one with [New], mount [NewHandler] and the HTTP handlers,
// and call [Checker.Run] and [Checker.Shutdown] yourself. The README's section
// "Health: one model, three views" shows the three views:
// https://github.com/connectkit/connectkit#health-one-model-three-views
//
// See https://github.com/grpc/grpc/blob/master/doc/health-checking.md for
// the protocol.
package health

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// servingStatus is the standard grpc.health.v1 enum, used as is so that
// every surface (binary, JSON, /readyz) speaks its standard names.
type servingStatus = healthpb.HealthCheckResponse_ServingStatus

const (
	statusUnknown        = healthpb.HealthCheckResponse_UNKNOWN
	statusServing        = healthpb.HealthCheckResponse_SERVING
	statusNotServing     = healthpb.HealthCheckResponse_NOT_SERVING
	statusServiceUnknown = healthpb.HealthCheckResponse_SERVICE_UNKNOWN
)

// Option configures a [Checker].
type Option interface {
	apply(*config)
}

type config struct {
	logger *slog.Logger
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLogger sets the logger on which the Checker reports checks that start
// failing (Warn) and recover (Info). A check that has not passed yet, such
// as a component still starting, is reported at Info until it has failed
// for 10s, then at Warn. Default: no logging.
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if logger != nil {
			c.logger = logger
		}
	})
}

// Checker holds the health model: registered services, checks and
// reporters, their latest results and the serving status they imply. Create
// one with [New]; its methods are safe for concurrent use.
type Checker struct {
	logger *slog.Logger

	mu     sync.Mutex
	checks map[string]*check // by name
	// services holds the serving status of every known service, "" included.
	services map[string]servingStatus
	shutdown bool
	watchers map[string]map[*watcher]struct{} // by service
	// watchesClosed is closed by CloseWatches.
	watchesClosed chan struct{}
	// runCtx is the background runner's context, nil before Run; running
	// is true from Run's start until its ctx is done.
	runCtx  context.Context
	running bool
	runWG   sync.WaitGroup

	watchProbe   time.Duration // WatchProbeInterval; shorter in tests
	startupGrace time.Duration // startupGrace; shorter in tests
}

// New returns a Checker that knows only the whole server (""), SERVING
// while no critical check says otherwise.
func New(opts ...Option) *Checker {
	cfg := config{logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o.apply(&cfg)
	}
	return &Checker{
		logger:        cfg.logger,
		checks:        make(map[string]*check),
		services:      map[string]servingStatus{"": statusServing},
		watchers:      make(map[string]map[*watcher]struct{}),
		watchesClosed: make(chan struct{}),
		watchProbe:    WatchProbeInterval,
		startupGrace:  startupGrace,
	}
}

// AddService makes the fully-qualified protobuf service name (such as
// "example.v1.ProfileService") known, so that gRPC health Check answers for
// it instead of NotFound, and Watch streams on it leave SERVICE_UNKNOWN. Its
// status is decided by the server-wide checks and its own. Adding a known
// service, or "", does nothing.
func (h *Checker) AddService(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addServiceLocked(name)
	h.updateLocked()
}

func (h *Checker) addServiceLocked(name string) {
	if _, ok := h.services[name]; !ok {
		// UNKNOWN never survives updateLocked: it marks the service as new.
		h.services[name] = statusUnknown
	}
}

// AddCheck registers a pull-model check (see [Check] for its fields and
// defaults). A background check (Interval > 0) runs under [Checker.Run]. It
// returns an error naming the problem if c is incomplete or its Name is
// taken.
func (h *Checker) AddCheck(c Check) error {
	if err := c.validate(false); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, err := h.addLocked(c, false)
	if err != nil {
		return err
	}
	if ch.background() && h.running {
		h.startLoopLocked(ch)
	}
	return nil
}

// AddReporter registers a push-model check: the component holding the
// returned [Reporter] reports its own state. c takes Name, Service,
// NonCritical and Liveness as for [Checker.AddCheck]; Func, Interval and
// Timeout must be zero. The reporter is pending, so failing, until its first
// Report.
func (h *Checker) AddReporter(c Check) (*Reporter, error) {
	if err := c.validate(true); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, err := h.addLocked(c, true)
	if err != nil {
		return nil, err
	}
	return &Reporter{checker: h, check: ch}, nil
}

func (h *Checker) addLocked(c Check, reporter bool) (*check, error) {
	if _, dup := h.checks[c.Name]; dup {
		return nil, fmt.Errorf("health: check %q is already registered", c.Name)
	}
	ch := &check{Check: c, reporter: reporter}
	h.checks[c.Name] = ch
	h.addServiceLocked(c.Service)
	h.updateLocked()
	return ch, nil
}

// Shutdown switches every service, and the whole server, to NOT_SERVING at
// once and for good, whatever the checks say. Check answers NOT_SERVING and
// every Watch stream is sent NOT_SERVING straight away, so load balancers
// stop routing before the server starts draining. Call it first thing on
// SIGTERM. Liveness (/healthz) is unaffected. Calling it again does nothing.
func (h *Checker) Shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shutdown = true
	h.updateLocked()
}

// startupGrace is how long a check that has never passed may fail before
// its failure is logged at Warn: components start in parallel with the
// first probes, and a subscriber that needs a few milliseconds to subscribe
// is starting, not failing.
const startupGrace = 10 * time.Second

// record stores the latest result of c and updates the serving statuses.
func (h *Checker) record(c *check, res result) {
	h.mu.Lock()
	was := c.res
	c.res = res
	h.updateLocked()
	log := h.transitionLocked(c, was, res)
	h.mu.Unlock()
	if log != nil {
		log()
	}
}

// transitionLocked updates c's failure streak for its new result and
// returns the log line it calls for, if any: a check that starts failing
// is logged at Warn, and at Info when it recovers; one that has never
// passed is logged at Info ("not passing yet") until it has failed for
// startupGrace, then at Warn.
func (h *Checker) transitionLocked(c *check, was, now result) func() {
	attrs := []any{"check", c.Name, "service", c.Service, "critical", !c.NonCritical, "liveness", c.Liveness}
	if now.err == nil {
		c.passed = true
		if c.graceTimer != nil {
			c.graceTimer.Stop()
			c.graceTimer = nil
		}
		if !was.ran || was.err == nil {
			return nil
		}
		c.warned = false
		return func() { h.logger.Info("health check recovered", attrs...) }
	}
	attrs = append(attrs, "error", now.err)
	if !was.ran || was.err == nil { // a new run of failures
		c.failingSince, c.warned = now.at, c.passed
		if c.passed {
			return func() { h.logger.Warn("health check failing", attrs...) }
		}
		// No later result may come to warn by (a reporter that reported
		// once, a first run stuck in its Func): warn by the clock too.
		since := c.failingSince
		c.graceTimer = time.AfterFunc(h.startupGrace-time.Since(since), func() { h.warnLate(c, since) })
		return func() { h.logger.Info("health check not passing yet", attrs...) }
	}
	if !c.warned && now.at.Sub(c.failingSince) >= h.startupGrace {
		c.warned = true
		attrs = append(attrs, "failing_for", now.at.Sub(c.failingSince).Round(time.Millisecond))
		return func() { h.logger.Warn("health check failing", attrs...) }
	}
	return nil
}

// warnLate logs c at Warn once it has failed for startupGrace since
// since without passing, if no result of it did so already, and the server
// is not shutting down (its logger's output may be gone by then: a test's).
func (h *Checker) warnLate(c *check, since time.Time) {
	h.mu.Lock()
	if h.shutdown || c.warned || !c.res.ran || c.res.err == nil || !c.failingSince.Equal(since) {
		h.mu.Unlock()
		return
	}
	c.warned = true
	attrs := []any{"check", c.Name, "service", c.Service, "critical", !c.NonCritical, "liveness", c.Liveness,
		"error", c.res.err, "failing_for", time.Since(since).Round(time.Millisecond)}
	h.mu.Unlock()
	h.logger.Warn("health check failing", attrs...)
}

// updateLocked recomputes the status of every service and wakes the
// watchers of those that changed.
func (h *Checker) updateLocked() {
	for svc, old := range h.services {
		st := h.computeLocked(svc)
		if st == old {
			continue
		}
		h.services[svc] = st
		for w := range h.watchers[svc] {
			w.wake()
		}
	}
}

func (h *Checker) computeLocked(svc string) servingStatus {
	if h.shutdown {
		return statusNotServing
	}
	for _, c := range h.checks {
		if c.Liveness || c.NonCritical || !c.res.failing() {
			continue
		}
		if svc == "" || c.Service == "" || c.Service == svc {
			return statusNotServing
		}
	}
	return statusServing
}

// status returns the serving status of svc, and whether svc is known.
func (h *Checker) status(svc string) (servingStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.services[svc]
	return st, ok
}

// scope selects the checks a probe runs and reports.
type scope struct {
	liveness bool
	service  string // readiness only; "" selects every readiness check
}

func (s scope) matches(c *check) bool {
	if c.Liveness != s.liveness {
		return false
	}
	return s.liveness || s.service == "" || c.Service == "" || c.Service == s.service
}

// probe runs the on-probe checks in scope (sharing the runs already in
// flight) and returns once they all have a result, or ctx is done. Readiness
// checks are not run once shutting down: the status is NOT_SERVING anyway.
func (h *Checker) probe(ctx context.Context, s scope) {
	h.mu.Lock()
	if h.shutdown && !s.liveness {
		h.mu.Unlock()
		return
	}
	var waits []<-chan struct{}
	for _, c := range h.checks {
		if c.reporter || c.background() || !s.matches(c) {
			continue
		}
		if c.flight == nil {
			h.startFlightLocked(ctx, c)
		}
		waits = append(waits, c.flight.done)
	}
	h.mu.Unlock()
	for _, done := range waits {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// startFlightLocked starts an on-probe run of c. The run outlives the probe
// that started it (others may share it) but keeps its context's values.
func (h *Checker) startFlightLocked(ctx context.Context, c *check) {
	f := &flight{done: make(chan struct{})}
	c.flight = f
	go func() {
		h.runCheck(context.WithoutCancel(ctx), c, f)
		h.mu.Lock()
		if c.flight == f {
			c.flight = nil
		}
		h.mu.Unlock()
	}()
}

// snapshot returns copies of the checks in scope, sorted by name, with
// their results, and the statuses of every known service, taken at once.
func (h *Checker) snapshot(s scope) ([]check, map[string]servingStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	checks := make([]check, 0, len(h.checks))
	for _, c := range h.checks {
		if s.matches(c) {
			checks = append(checks, check{Check: c.Check, reporter: c.reporter, res: c.res})
		}
	}
	slices.SortFunc(checks, func(a, b check) int { return cmp.Compare(a.Name, b.Name) })
	return checks, maps.Clone(h.services), h.shutdown
}
