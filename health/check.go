package health

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultTimeout bounds one run of a [Check] whose Timeout is zero. It matches
// the default timeout of Kubernetes probes (timeoutSeconds: 1) and of
// grpc_health_probe (-rpc-timeout 1s): a check slower than that fails the
// probe anyway.
const DefaultTimeout = time.Second

// Check describes one pull-model health check, registered with
// [Checker.AddCheck]. Its zero value, with a Name and a Func, is a critical
// readiness check of the whole server, run on each probe with
// [DefaultTimeout].
type Check struct {
	// Name identifies the check in logs and in the /healthz and /readyz
	// bodies. Required, unique within a Checker.
	Name string
	// Service is the fully-qualified protobuf service the check speaks for
	// (e.g. "example.v1.ProfileService"); registering the check makes the
	// service known, as [Checker.AddService] does. Default "": the whole
	// server, so a failure of a critical check makes every service
	// NOT_SERVING.
	Service string
	// NonCritical makes a failure visible in /readyz and in the logs without
	// changing any serving status. Default false: a failing critical check
	// makes its service, and the whole server (""), NOT_SERVING.
	NonCritical bool
	// Liveness makes the check decide /healthz instead of readiness (gRPC
	// health and /readyz). A liveness check must test the process itself (a
	// stuck worker loop, a deadlock), never a dependency: an orchestrator
	// restarts a process that fails liveness, and restarting cannot fix a
	// database outage. Service must be "" for a liveness check. Default false.
	Liveness bool
	// Func runs the check: nil means healthy. It must honour ctx, which
	// carries the check's timeout. Required for [Checker.AddCheck]; a
	// *sql.DB's PingContext method fits as is (see [PingCheck]).
	Func func(ctx context.Context) error
	// Interval, when positive, runs the check in the background every
	// Interval (from [Checker.Run]) and serves its cached result to every
	// probe, so an expensive dependency check is not run by each probe.
	// Until its first run completes the check is pending, which counts as
	// failing. Default 0: the check runs on each probe (a gRPC Check or
	// Watch, a GET /readyz or /healthz), concurrent probes sharing one run.
	Interval time.Duration
	// Timeout bounds one run of Func; a run that takes longer fails with
	// "timed out". Default [DefaultTimeout].
	Timeout time.Duration
}

func (c Check) validate(reporter bool) error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("empty Name"))
	}
	if c.Liveness && c.Service != "" {
		errs = append(errs, fmt.Errorf("liveness check with Service %q: liveness is server-wide", c.Service))
	}
	if reporter {
		if c.Func != nil || c.Interval != 0 || c.Timeout != 0 {
			errs = append(errs, errors.New("a reporter takes no Func, Interval or Timeout: its component reports its own state"))
		}
	} else {
		if c.Func == nil {
			errs = append(errs, errors.New("nil Func"))
		}
		if c.Interval < 0 {
			errs = append(errs, fmt.Errorf("negative Interval %s", c.Interval))
		}
		if c.Timeout < 0 {
			errs = append(errs, fmt.Errorf("negative Timeout %s", c.Timeout))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("health: bad check %q: %w", c.Name, err)
	}
	return nil
}

func (c Check) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Pinger is what [PingCheck] checks: *sql.DB, *sql.Conn and most database
// clients with a PingContext method.
type Pinger interface {
	PingContext(ctx context.Context) error
}

// PingCheck returns a critical, server-wide readiness [Check] named name
// that pings p, on each probe by default. Set the returned Check's Interval
// to ping in the background instead, or its Service to tie it to one service:
//
//	c := health.PingCheck("postgres", db)
//	c.Interval = 10 * time.Second
//	err := checker.AddCheck(c)
func PingCheck(name string, p Pinger) Check {
	return Check{
		Name: name,
		Func: func(ctx context.Context) error {
			if err := p.PingContext(ctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			return nil
		},
	}
}

// Reporter is the push-model side of the health model: a background
// component (a message subscriber, a cache warmer) reports its own state
// instead of being polled. Create one with [Checker.AddReporter]. Its methods
// are safe for concurrent use.
type Reporter struct {
	checker *Checker
	check   *check
}

// Report records err as the component's current state: nil means healthy.
// Until its first Report a reporter is pending, which counts as failing, so
// a critical component keeps the server NOT_SERVING until it is up.
func (r *Reporter) Report(err error) {
	now := time.Now()
	r.checker.record(r.check, result{ran: true, err: err, at: now})
}

// result is the outcome of a check's latest run (or report).
type result struct {
	ran      bool // false while pending
	err      error
	at       time.Time     // when the run started, or the report arrived
	duration time.Duration // zero for reports
}

func (r result) failing() bool { return !r.ran || r.err != nil }

// check is a registered Check with its state, guarded by Checker.mu.
type check struct {
	Check
	reporter bool
	res      result
	// passed says the check has passed at least once; failingSince starts
	// its current run of failures, and warned says that run was logged at
	// Warn (see transitionLocked).
	passed       bool
	failingSince time.Time
	warned       bool
	// graceTimer warns of a check that has never passed once it has
	// failed for startupGrace, should no new result do it (see warnLate).
	graceTimer *time.Timer
	// flight is the on-probe run in progress, shared by concurrent probes;
	// nil when none is.
	flight *flight
}

func (c *check) background() bool { return c.Interval > 0 }

func (c *check) mode() string {
	switch {
	case c.reporter:
		return "report"
	case c.background():
		return "background"
	default:
		return "probe"
	}
}

// flight is one run of a check. done is closed once its result is recorded:
// when Func returns, or when the run times out (Func may ignore ctx; the run
// is then still in flight, so a stuck Func is never started twice).
type flight struct {
	done chan struct{}
}

// runCheck runs c.Func once under c's timeout and records the result, unless
// parent was cancelled meanwhile (the background runner stopping: its verdict
// would be about shutdown, not about the dependency). It closes f.done once a
// result is recorded, and returns when Func has returned or parent is done.
func (h *Checker) runCheck(parent context.Context, c *check, f *flight) {
	timeout := c.timeout()
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- call(ctx, c.Func) }()
	var err error
	returned := true
	select {
	case err = <-errc:
	case <-ctx.Done():
		select {
		case err = <-errc:
		default:
			returned = false
			err = errors.New("check did not return")
		}
	}
	if parent.Err() == nil {
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		h.record(c, result{ran: true, err: err, at: start, duration: time.Since(start)})
	}
	if returned {
		// Done with this run: the next probe must start a new one, not
		// reuse this result (a stuck run stays, so it is not started twice).
		h.mu.Lock()
		if c.flight == f {
			c.flight = nil
		}
		h.mu.Unlock()
	}
	close(f.done)
	if !returned {
		select {
		case <-errc:
		case <-parent.Done():
		}
	}
}

// call runs fn, turning a panic into an error: a buggy check must not take
// the process down, least of all from a background goroutine.
func call(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check panicked: %v", r)
		}
	}()
	return fn(ctx)
}
