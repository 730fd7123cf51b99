package interceptors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/connectkit/connectkit/internal/notsent"
)

// ErrBreakerOpen is the cause of the Unavailable error that a call refused by
// [CircuitBreaker] fails with. errors.Is(err, ErrBreakerOpen) tells a call
// that never left the client from one the server failed.
var ErrBreakerOpen = errors.New("circuit breaker is open")

// ErrConnectionLost is the cause, beside the connection's own error, of the
// Unavailable error of a call whose connection closed under it (its
// server's process killed, or its node lost). Kit's balanced HTTP client
// reports it.
//
// [CircuitBreaker] does not count such a failure. Its breaker covers every
// address behind a name, and the balancer already leaves the dead address
// out and sends later calls to the others; counting the calls that were in
// flight on the one lost connection would trip the breaker and refuse calls
// to the healthy addresses too. A service whose every server is gone still
// trips it, by the connections they refuse. [Retry] retries such a call of
// an idempotent method without taking a token of its peer's budget.
var ErrConnectionLost = errors.New("connection to the server lost")

// ErrNotSent is the cause of the Unavailable error of a call that its
// client's transport refused before any of it left the client. Kit's
// balanced HTTP client refuses a call while every address of its name has
// refused its last connection ("no healthy connections to HOST"). [Retry]
// retries such a call whatever its method's idempotency, as it does a call
// whose connection could not be dialed. [CircuitBreaker] counts it as the
// Unavailable it is: every server of the name is gone.
//
// It is the same value as
// [github.com/connectkit/connectkit/pubsub.ErrNotSent], which a publish
// that never left the process wraps: errors.Is(err, ErrNotSent) tells a
// call or a publish that was certainly not sent, whichever name it uses.
var ErrNotSent = notsent.Err

// Defaults of [CircuitBreaker], as gobreaker and Hystrix users know them: a
// dependency that fails 5 calls in a row, or half of at least 20 calls within
// 10s, is left alone for 10s, then one probe call decides.
const (
	DefaultBreakerConsecutiveFailures = 5
	DefaultBreakerFailureRatio        = 0.5
	DefaultBreakerMinCalls            = 20
	DefaultBreakerWindow              = 10 * time.Second
	DefaultBreakerOpenTimeout         = 10 * time.Second
	DefaultBreakerHalfOpenCalls       = 1
)

// defaultTripCodes are the codes that [CircuitBreaker] counts as failures by
// default: the server's or the network's fault. Every other code is an
// answer from a working server (InvalidArgument, NotFound,
// PermissionDenied, FailedPrecondition, Unimplemented: the same call would
// fail the same way on any instance) and counts as a success. Canceled is
// left out of the counts altogether: the caller gave up, which says nothing
// of the server. ResourceExhausted is not among them: it also says that one
// caller is over its quota or sent a message over a size limit; add it with
// [WithBreakerTripCodes] when your servers shed load with it.
var defaultTripCodes = []connect.Code{
	connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeInternal,
	connect.CodeUnknown, connect.CodeDataLoss,
}

// BreakerOption configures [CircuitBreaker].
type BreakerOption interface {
	applyToBreaker(cfg *breakerConfig)
}

type breakerOption func(*breakerConfig)

func (o breakerOption) applyToBreaker(c *breakerConfig) { o(c) }

// maxBreakerCount bounds the counts of the options: gobreaker counts calls
// in uint32s.
const maxBreakerCount = 1 << 30

// windowBuckets is the number of steps that a breaker's window rolls by.
const windowBuckets = 10

type breakerConfig struct {
	consecutive   int
	ratio         float64
	minCalls      int
	window        time.Duration
	openTimeout   time.Duration
	halfOpenCalls int
	tripCodes     []connect.Code
}

// WithBreakerConsecutiveFailures trips a breaker after n failures in a row
// (default [DefaultBreakerConsecutiveFailures]); 0 keeps the default.
func WithBreakerConsecutiveFailures(n int) BreakerOption {
	return breakerOption(func(c *breakerConfig) { c.consecutive = n })
}

// WithBreakerFailureRatio trips a breaker when at least ratio of the calls in
// its window failed, once the window holds minCalls calls. The defaults are
// [DefaultBreakerFailureRatio] of [DefaultBreakerMinCalls]; 0 keeps a
// default. It catches a dependency that fails often but not every time,
// which [WithBreakerConsecutiveFailures] misses under load.
func WithBreakerFailureRatio(ratio float64, minCalls int) BreakerOption {
	return breakerOption(func(c *breakerConfig) { c.ratio, c.minCalls = ratio, minCalls })
}

// WithBreakerWindow sets how long a closed breaker remembers calls (default
// [DefaultBreakerWindow]): both rules count the calls that ended within the
// last d, in a window that rolls by tenths of d. A caller that calls less
// often than [WithBreakerConsecutiveFailures] times a window never trips it by
// failures in a row; with so few calls, none pile up either.
func WithBreakerWindow(d time.Duration) BreakerOption {
	return breakerOption(func(c *breakerConfig) { c.window = d })
}

// WithBreakerOpenTimeout sets how long a breaker stays open, refusing every call,
// before it lets probe calls through (default [DefaultBreakerOpenTimeout]).
func WithBreakerOpenTimeout(d time.Duration) BreakerOption {
	return breakerOption(func(c *breakerConfig) { c.openTimeout = d })
}

// WithBreakerHalfOpenCalls sets how many probe calls a half-open breaker lets
// through, and how many of them must succeed in a row to close it (default
// [DefaultBreakerHalfOpenCalls]). The calls beyond them are refused while
// the probes run, and the first probe that fails opens it again.
func WithBreakerHalfOpenCalls(n int) BreakerOption {
	return breakerOption(func(c *breakerConfig) { c.halfOpenCalls = n })
}

// WithBreakerTripCodes replaces the codes that count as failures (by default
// Unavailable, DeadlineExceeded, Internal, Unknown and DataLoss; no codes
// keeps the default). Canceled never counts, nor [ErrConnectionLost].
func WithBreakerTripCodes(codes ...connect.Code) BreakerOption {
	codes = slices.Clone(codes)
	return breakerOption(func(c *breakerConfig) { c.tripCodes = codes })
}

func (c *breakerConfig) setDefaults() {
	c.consecutive = cmp.Or(c.consecutive, DefaultBreakerConsecutiveFailures)
	c.ratio = cmp.Or(c.ratio, DefaultBreakerFailureRatio)
	c.minCalls = cmp.Or(c.minCalls, DefaultBreakerMinCalls)
	c.window = cmp.Or(c.window, DefaultBreakerWindow)
	c.openTimeout = cmp.Or(c.openTimeout, DefaultBreakerOpenTimeout)
	c.halfOpenCalls = cmp.Or(c.halfOpenCalls, DefaultBreakerHalfOpenCalls)
	if len(c.tripCodes) == 0 { // nil or empty: no codes keeps the default
		c.tripCodes = defaultTripCodes
	}
}

func (c *breakerConfig) validate() error {
	var errs []error
	if c.consecutive < 0 || c.consecutive > maxBreakerCount {
		errs = append(errs, fmt.Errorf("consecutive failures %d: must be between 1 and %d", c.consecutive, maxBreakerCount))
	}
	if c.ratio < 0 || c.ratio > 1 {
		errs = append(errs, fmt.Errorf("failure ratio %g: must be between 0 and 1", c.ratio))
	}
	if c.minCalls < 0 || c.minCalls > maxBreakerCount {
		errs = append(errs, fmt.Errorf("minimum calls %d: must be between 1 and %d", c.minCalls, maxBreakerCount))
	}
	if c.window < 0 {
		errs = append(errs, fmt.Errorf("window %s: must not be negative", c.window))
	}
	if c.openTimeout < 0 {
		errs = append(errs, fmt.Errorf("open timeout %s: must not be negative", c.openTimeout))
	}
	if c.halfOpenCalls < 0 || c.halfOpenCalls > maxBreakerCount {
		errs = append(errs, fmt.Errorf("half-open calls %d: must be between 1 and %d", c.halfOpenCalls, maxBreakerCount))
	}
	for _, code := range c.tripCodes {
		if code < connect.CodeCanceled || code > maxCode {
			errs = append(errs, fmt.Errorf("trip code %d: not a connect code", code))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("interceptors: CircuitBreaker: %w", errors.Join(errs...))
	}
	return nil
}

// CircuitBreaker returns a client-side interceptor that stops calling a
// server that keeps failing. It keeps one [gobreaker] circuit breaker per
// server address and procedure: a breaker trips after
// [DefaultBreakerConsecutiveFailures] failures in a row, or when
// [DefaultBreakerFailureRatio] of at least [DefaultBreakerMinCalls] calls in
// a [DefaultBreakerWindow] failed (see [WithBreakerTripCodes] for what counts as
// a failure). Once open, it fails every call of that procedure to that
// address at once, without touching the network, with
// connect.CodeUnavailable and a message naming the procedure and the
// address, whose cause is [ErrBreakerOpen]. After [DefaultBreakerOpenTimeout]
// it is half-open: the next call goes through as a probe (the calls beyond
// [DefaultBreakerHalfOpenCalls] probes are refused while they run), and
// closes the breaker if it succeeds or opens it again if it fails. A unary
// call made with a context already done (its deadline spent before the
// call) fails at once with the context's code, as without a breaker, and
// is neither refused nor counted.
//
// Breakers are keyed by the address the client calls (the host and port of
// its base URL, connect.Peer.Addr) and the procedure, so one interceptor
// can serve the clients of several services, as kit's ClientOptions does:
// a service that is down does not stop the calls to another that serves
// the same procedure at another address. Calls behind one address (a load
// balancer, a Kubernetes Service) share its breaker. A breaker, and its
// series, is kept for each address and procedure called as long as the
// interceptor lives: give it to the clients of the services you call, not
// to clients of addresses that come from data (a webhook's or a tenant's
// URL), whose breakers and series would have no bound.
//
// Each change of state is logged at warn on logger (nil logs nothing) with
// the peer, the procedure and the two states. With reg not nil, the gauge
// rpc_client_circuit_breaker_state{peer,procedure} tells the state
// (0 closed, 1 half-open, 2 open) and the counter
// rpc_client_circuit_breaker_refused_total{peer,procedure} counts the calls
// refused. An open breaker becomes half-open at the first call after its
// timeout, so its gauge reads 2 until the next call is made. Two
// CircuitBreakers on one registry share these series (and write the same
// ones for a peer and procedure that both call): give each client one
// interceptor, or each its own registry.
//
// Place it inside Logging and Metrics (connect runs the first interceptor
// of a list outermost): the calls it refuses are then logged and counted
// like any failed call, once. Streams are checked when they are opened: a
// stream opened on an open breaker fails at its first Send or Receive, and
// a stream counts by its first Receive (a message or its clean end is a
// success, an error is counted by its code); a stream closed before it
// receives anything is not counted. A probe stream holds its half-open
// place until then.
//
// A pubsub publish (a unary call that package pubsub makes through the
// client chain) goes through unchecked and uncounted: a publish refused
// while the broker has recovered loses an event that the caller's data
// already says happened. While the broker is down, publishes fail as they
// do without a breaker, within their context's deadline. Calls that a
// subscriber's handler makes are RPCs and are checked. On a handler, the
// interceptor does nothing.
//
// It fails if an option is out of range or its metrics cannot be registered
// on reg.
//
// [gobreaker]: https://pkg.go.dev/github.com/sony/gobreaker/v2
func CircuitBreaker(logger *slog.Logger, reg prometheus.Registerer, opts ...BreakerOption) (connect.Interceptor, error) {
	var cfg breakerConfig
	for _, opt := range opts {
		opt.applyToBreaker(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	b := &breakers{cfg: cfg, logger: logger}
	for _, code := range cfg.tripCodes {
		b.trips[code] = true
	}
	if reg != nil {
		var err error
		b.state = registered(reg, &err, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rpc_client_circuit_breaker_state",
			Help: "State of the client circuit breaker of a peer and procedure: 0 closed, 1 half-open, 2 open.",
		}, []string{"peer", "procedure"}))
		b.refused = registered(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rpc_client_circuit_breaker_refused_total",
			Help: "Total number of client calls refused by an open circuit breaker, by peer and procedure.",
		}, []string{"peer", "procedure"}))
		if err != nil {
			return nil, fmt.Errorf("interceptors: CircuitBreaker: %w", err)
		}
	}
	return b, nil
}

// breakers is the interceptor of [CircuitBreaker]: a breaker per key.
type breakers struct {
	cfg     breakerConfig
	trips   [maxCode + 1]bool
	logger  *slog.Logger
	state   *prometheus.GaugeVec   // nil without a registry
	refused *prometheus.CounterVec // nil without a registry

	// byKey holds a *breaker per breakerKey: written once per key, read
	// by every call, as sync.Map is made for. A map copied on write cost
	// a copy of every breaker per new key: minutes for 30 000 peers.
	byKey sync.Map
	mu    sync.Mutex // held while a key's breaker is made, so it is made once
}

type breakerKey struct{ peer, procedure string }

// breaker is the circuit breaker of one key, with its metrics.
type breaker struct {
	key     breakerKey
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	refused prometheus.Counter // nil without a registry
}

// The outcomes that a call reports to its breaker: gobreaker classifies
// them with IsSuccessful and IsExcluded.
var (
	errTripped  = errors.New("call failed")
	errExcluded = errors.New("call not counted")
)

func (b *breakers) get(peer, procedure string) *breaker {
	key := breakerKey{peer, procedure}
	if br, ok := b.byKey.Load(key); ok {
		return br.(*breaker)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if br, ok := b.byKey.Load(key); ok {
		return br.(*breaker)
	}
	br := b.newBreaker(key)
	b.byKey.Store(key, br)
	return br
}

func (b *breakers) newBreaker(key breakerKey) *breaker {
	br := &breaker{key: key}
	var gauge prometheus.Gauge
	if b.state != nil {
		gauge = b.state.WithLabelValues(key.peer, key.procedure)
		gauge.Set(float64(gobreaker.StateClosed))
		br.refused = b.refused.WithLabelValues(key.peer, key.procedure)
	}
	cfg := b.cfg
	br.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         key.peer + key.procedure,
		MaxRequests:  uint32(cfg.halfOpenCalls),
		Interval:     cfg.window,
		BucketPeriod: cfg.window / windowBuckets,
		Timeout:      cfg.openTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			done := c.TotalSuccesses + c.TotalFailures
			return c.ConsecutiveFailures >= uint32(cfg.consecutive) ||
				done >= uint32(cfg.minCalls) && float64(c.TotalFailures) >= cfg.ratio*float64(done)
		},
		// Called under the breaker's lock: neither may call the breaker.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if gauge != nil {
				gauge.Set(float64(to))
			}
			if b.logger != nil {
				b.logger.LogAttrs(context.Background(), slog.LevelWarn, "circuit breaker state changed",
					slog.String("peer", key.peer), slog.String("procedure", key.procedure),
					slog.String("from", from.String()), slog.String("to", to.String()))
			}
		},
		IsSuccessful: func(err error) bool { return err == nil },
		IsExcluded:   func(err error) bool { return err == errExcluded },
	})
	return br
}

// outcome is what a call's result tells its breaker: nil for a success,
// errTripped for a failure, errExcluded for a call that does not count.
func (b *breakers) outcome(ctx context.Context, err error) error {
	code := codeOf(err)
	switch {
	case code == codeOK:
		return nil
	case code == connect.CodeCanceled || errors.Is(ctx.Err(), context.Canceled),
		errors.Is(err, ErrConnectionLost):
		return errExcluded
	case b.trips[code]:
		return errTripped
	default:
		return nil
	}
}

// refuse is the error of a call that br does not let through (state is the
// error of gobreaker's Allow).
func (br *breaker) refuse(state error) error {
	if br.refused != nil {
		br.refused.Inc()
	}
	why := "open"
	if errors.Is(state, gobreaker.ErrTooManyRequests) {
		why = "half-open and its probe calls are in flight"
	}
	return connect.NewError(connect.CodeUnavailable, &refusedError{key: br.key, why: why})
}

// refusedError is the cause of a refused call's error; it is [ErrBreakerOpen].
type refusedError struct {
	key breakerKey
	why string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("not sent: the circuit breaker of %s at %s is %s", e.key.procedure, e.key.peer, e.why)
}

func (e *refusedError) Is(target error) bool { return target == ErrBreakerOpen }

func (b *breakers) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		spec := req.Spec()
		if !spec.IsClient || msgctx.ForRequest(ctx, req) != nil || ctx.Err() != nil {
			// A call whose context is done fails without leaving the
			// client, and tells nothing of the server.
			return next(ctx, req)
		}
		br := b.get(req.Peer().Addr, spec.Procedure)
		done, err := br.cb.Allow()
		if err != nil {
			return nil, br.refuse(err)
		}
		reported := false
		defer func() {
			if !reported { // next panicked: free the probe's place
				done(errTripped)
			}
		}()
		resp, err := next(ctx, req)
		reported = true
		done(b.outcome(ctx, err))
		return resp, err
	}
}

func (b *breakers) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		// Making the conn sends nothing: connect sends the request at the
		// first Send or CloseRequest.
		conn := next(ctx, spec)
		br := b.get(conn.Peer().Addr, spec.Procedure)
		done, err := br.cb.Allow()
		if err != nil {
			return &refusedConn{StreamingClientConn: conn, err: br.refuse(err)}
		}
		return &breakerConn{StreamingClientConn: conn, ctx: ctx, b: b, done: done}
	}
}

func (b *breakers) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// breakerConn reports a stream's outcome to its breaker at its first
// Receive, or as not counted when it is closed before.
type breakerConn struct {
	connect.StreamingClientConn
	ctx  context.Context
	b    *breakers
	once sync.Once
	done func(error)
}

func (c *breakerConn) report(outcome error) {
	c.once.Do(func() { c.done(outcome) })
}

func (c *breakerConn) Receive(msg any) error {
	err := c.StreamingClientConn.Receive(msg)
	if errors.Is(err, io.EOF) {
		c.report(nil)
	} else {
		c.report(c.b.outcome(c.ctx, err))
	}
	return err
}

func (c *breakerConn) CloseResponse() error {
	c.report(errExcluded)
	return c.StreamingClientConn.CloseResponse()
}

// refusedConn is a stream that an open breaker refused: it sends nothing,
// and fails with err.
type refusedConn struct {
	connect.StreamingClientConn
	err error
}

func (c *refusedConn) Send(any) error    { return c.err }
func (c *refusedConn) Receive(any) error { return c.err }
func (c *refusedConn) CloseRequest() error {
	return nil
}
func (c *refusedConn) CloseResponse() error         { return nil }
func (c *refusedConn) ResponseHeader() http.Header  { return http.Header{} }
func (c *refusedConn) ResponseTrailer() http.Header { return http.Header{} }
