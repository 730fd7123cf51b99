package interceptors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/connectkit/connectkit/internal/msgctx"
)

// Defaults of [Retry]. They are those of gRPC's retry policy examples and of
// its retry throttling: up to 3 attempts, waits drawn up to 100ms, 200ms… at
// most 1s, and retries stop while a peer's budget of 10 tokens is at half or
// below (each failed attempt takes 1 token, each success gives back 0.1).
const (
	DefaultRetryMaxAttempts       = 3
	DefaultRetryInitialBackoff    = 100 * time.Millisecond
	DefaultRetryMaxBackoff        = time.Second
	DefaultRetryBackoffMultiplier = 2.0
	DefaultRetryBudgetTokens      = 10
	DefaultRetryBudgetRatio       = 0.1
)

// MaxRetryAttempts is the most attempts a call may make, as gRPC caps
// maxAttempts at 5.
const MaxRetryAttempts = 5

// MaxRetryWait is the longest wait a server may ask for (Retry-After,
// grpc-retry-pushback-ms) that [Retry] honours. A longer one ends the
// call's retries, and the caller gets the server's answer at once.
const MaxRetryWait = 30 * time.Second

// MinRetryBudgetRatio is the smallest ratio that [WithRetryBudget] takes.
// Budgets count in thousandths of a token, as gRPC's retry throttling
// does, and a smaller ratio would give nothing back, so that a budget once
// spent would never fill again.
const MinRetryBudgetRatio = 0.001

// PreviousAttemptsHeader is the request header that a retried attempt
// carries, as gRPC sends it: the number of attempts made before it.
const PreviousAttemptsHeader = "Grpc-Previous-Rpc-Attempts"

// defaultRetryCodes are the codes that [Retry] retries by default.
var defaultRetryCodes = []connect.Code{connect.CodeUnavailable}

// RetryOption configures [Retry].
type RetryOption interface {
	applyToRetry(cfg *retryConfig)
}

type retryOption func(*retryConfig)

func (o retryOption) applyToRetry(c *retryConfig) { o(c) }

type retryConfig struct {
	maxAttempts int
	initial     time.Duration
	maxBackoff  time.Duration
	multiplier  float64
	codes       []connect.Code
	tokens      int
	ratio       float64
}

// WithRetryMaxAttempts sets the most attempts a call makes, the first one
// included (default [DefaultRetryMaxAttempts], at most [MaxRetryAttempts]);
// 0 keeps the default, 1 never retries.
func WithRetryMaxAttempts(n int) RetryOption {
	return retryOption(func(c *retryConfig) { c.maxAttempts = n })
}

// WithRetryBackoff sets the waits between attempts. The wait before the nth
// retry is drawn at random between 0 and initial×multiplierⁿ⁻¹, capped at
// max (full jitter; defaults [DefaultRetryInitialBackoff],
// [DefaultRetryMaxBackoff], [DefaultRetryBackoffMultiplier]); 0 keeps a
// default.
func WithRetryBackoff(initial, max time.Duration, multiplier float64) RetryOption {
	return retryOption(func(c *retryConfig) { c.initial, c.maxBackoff, c.multiplier = initial, max, multiplier })
}

// WithRetryCodes replaces the codes that an idempotent call is retried on (by
// default Unavailable alone; no codes keeps the default). Canceled and
// DeadlineExceeded are retried only when listed, and never once the
// caller's own context is done.
func WithRetryCodes(codes ...connect.Code) RetryOption {
	codes = slices.Clone(codes)
	return retryOption(func(c *retryConfig) { c.codes = codes })
}

// WithRetryBudget sets each peer's retry budget, as gRPC's retry throttling does.
// The budget is a bucket of tokens full at first, from which every failed
// attempt that could be retried takes one (but one lost with its connection,
// [ErrConnectionLost]) and every successful call gives back ratio (at least
// [MinRetryBudgetRatio], at most 1); a call is retried only while more than
// half the tokens are left (defaults [DefaultRetryBudgetTokens] and
// [DefaultRetryBudgetRatio]; 0 keeps a default). A peer that fails every call
// thus gets fewer than tokens/2 retries in all, since the retried attempts'
// failures take their tokens too (3 with the defaults: the first call's 2, then
// 1), and one that fails some gets about one retry per 1/ratio successes.
func WithRetryBudget(tokens int, ratio float64) RetryOption {
	return retryOption(func(c *retryConfig) { c.tokens, c.ratio = tokens, ratio })
}

func (c *retryConfig) setDefaults() {
	c.maxAttempts = cmp.Or(c.maxAttempts, DefaultRetryMaxAttempts)
	c.initial = cmp.Or(c.initial, DefaultRetryInitialBackoff)
	c.maxBackoff = cmp.Or(c.maxBackoff, max(DefaultRetryMaxBackoff, c.initial))
	c.multiplier = cmp.Or(c.multiplier, DefaultRetryBackoffMultiplier)
	c.tokens = cmp.Or(c.tokens, DefaultRetryBudgetTokens)
	c.ratio = cmp.Or(c.ratio, DefaultRetryBudgetRatio)
	if len(c.codes) == 0 { // nil or empty: no codes keeps the default
		c.codes = defaultRetryCodes
	}
}

// maxRetryTokens bounds the tokens of a retry budget.
const maxRetryTokens = 1_000_000

func (c *retryConfig) validate() error {
	var errs []error
	if c.maxAttempts < 0 || c.maxAttempts > MaxRetryAttempts {
		errs = append(errs, fmt.Errorf("max attempts %d: must be between 1 and %d", c.maxAttempts, MaxRetryAttempts))
	}
	if c.initial < 0 {
		errs = append(errs, fmt.Errorf("initial backoff %s: must not be negative", c.initial))
	}
	if c.maxBackoff < 0 || c.maxBackoff > 0 && c.maxBackoff < c.initial {
		errs = append(errs, fmt.Errorf("max backoff %s: must not be below the initial backoff (%s)", c.maxBackoff, c.initial))
	}
	if c.multiplier != 0 && !(c.multiplier >= 1 && c.multiplier <= 10) {
		errs = append(errs, fmt.Errorf("backoff multiplier %g: must be between 1 and 10", c.multiplier))
	}
	if c.tokens < 0 || c.tokens > maxRetryTokens {
		errs = append(errs, fmt.Errorf("budget tokens %d: must be between 1 and %d", c.tokens, maxRetryTokens))
	}
	if c.ratio != 0 && !(c.ratio >= MinRetryBudgetRatio && c.ratio <= 1) {
		errs = append(errs, fmt.Errorf("budget ratio %g: must be between %g and 1", c.ratio, MinRetryBudgetRatio))
	}
	for _, code := range c.codes {
		if code < connect.CodeCanceled || code > maxCode {
			errs = append(errs, fmt.Errorf("retry code %d: not a connect code", code))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("interceptors: Retry: %w", errors.Join(errs...))
	}
	return nil
}

// Retry returns a client-side interceptor that makes a unary call again
// when an attempt fails in a way that a new attempt may mend, as gRPC's
// retry policies do:
//
//   - A call whose method is idempotent (connect.Spec.IdempotencyLevel
//     IdempotencyNoSideEffects or IdempotencyIdempotent, from the proto's
//     option idempotency_level) is retried when it fails with one of the
//     codes of [WithRetryCodes] (Unavailable by default).
//   - Any unary call is retried when its request provably never left the
//     client: the connection to the server could not be made (refused, or
//     its name did not resolve), or the transport refused the call before
//     sending it ([ErrNotSent]: kit's balanced client with no healthy
//     connection to the name).
//   - A call refused by a [CircuitBreaker] ([ErrBreakerOpen]) is not
//     retried, nor is a stream, nor a call whose own context is done.
//
// It makes at most [DefaultRetryMaxAttempts] attempts, waiting between them
// with exponential backoff and full jitter (see [WithRetryBackoff]). A server's
// wait is honoured in place of the backoff when it is longer: Retry-After
// (in seconds or as an HTTP date, as [RateLimit] sends it with
// ResourceExhausted, which is retried only when listed in [WithRetryCodes]) and
// gRPC's grpc-retry-pushback-ms, which also ends the retries when it is not
// a number, as gRPC's clients read it. A wait longer than [MaxRetryWait],
// or one that would reach the deadline of the call's context, ends the
// retries: the call fails at once with the last attempt's error, and no
// attempt starts that could not get any time. A caller that cancels during
// a wait gets Canceled. Each retried attempt carries
// [PreviousAttemptsHeader] with the number of attempts made before it.
//
// A budget per peer address ([WithRetryBudget]) stops retries while a peer
// fails more than it succeeds: a peer that fails every call costs its
// callers fewer than [DefaultRetryBudgetTokens]/2 retries in all, not
// [DefaultRetryMaxAttempts] times the calls. A budget, and its series, is
// kept for each address called as long as the interceptor lives: as with
// [CircuitBreaker], give it to the clients of the services you call, not
// to clients of addresses that come from data.
//
// Place it after Tracing, Logging and Metrics and before [CircuitBreaker],
// as kit's client chain does: the call that the caller made is traced,
// logged and counted once, with the code of its last attempt, as grpc-go's
// interceptors see a call that its retry policy retried, while the breaker
// sees each attempt. The trace context that Tracing puts in the request
// goes with every attempt, so each attempt's server span is a child of the
// call's span, which gets an event per retry. With reg not nil, the counter
// rpc_client_retries_total{peer,procedure,code} counts the retries by the
// code of the attempt that failed, and
// rpc_client_retries_throttled_total{peer,procedure} the retries that the
// budget refused. Each retry is logged at debug on logger (nil logs
// nothing), and a peer's budget running out at warn, once until it fills
// again. A retry is counted, logged and traced when its attempt starts,
// after its wait: a call canceled during the wait made none.
//
// A pubsub publish (a unary call that package pubsub makes through the
// client chain) is not retried: the broker's client has its own. On a
// handler, the interceptor does nothing.
//
// It fails if an option is out of range or its metrics cannot be
// registered on reg.
func Retry(logger *slog.Logger, reg prometheus.Registerer, opts ...RetryOption) (connect.Interceptor, error) {
	var cfg retryConfig
	for _, opt := range opts {
		opt.applyToRetry(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &retrier{cfg: cfg, logger: logger,
		full:      int64(cfg.tokens) * tokenScale,
		threshold: int64(cfg.tokens) * tokenScale / 2,
		refill:    int64(math.Round(cfg.ratio * tokenScale)),
	}
	for _, code := range cfg.codes {
		r.codes[code] = true
	}
	if reg != nil {
		var err error
		r.retries = registered(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rpc_client_retries_total",
			Help: "Total number of client calls retried, by peer, procedure and the code of the attempt that failed.",
		}, []string{"peer", "procedure", "code"}))
		r.throttled = registered(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rpc_client_retries_throttled_total",
			Help: "Total number of client call retries refused by the peer's retry budget, by peer and procedure.",
		}, []string{"peer", "procedure"}))
		if err != nil {
			return nil, fmt.Errorf("interceptors: Retry: %w", err)
		}
	}
	return r, nil
}

// tokenScale is the number of steps of a budget's token: budgets count in
// thousandths, which atomic integers hold.
const tokenScale = 1000

// retrier is the interceptor of [Retry].
type retrier struct {
	cfg       retryConfig
	codes     [maxCode + 1]bool
	full      int64 // a full budget, in thousandths of tokens
	threshold int64 // retries stop at or below it
	refill    int64 // given back by a success
	logger    *slog.Logger
	retries   *prometheus.CounterVec // nil without a registry
	throttled *prometheus.CounterVec // nil without a registry

	budgets sync.Map // peer address → *retryBudget
}

// retryBudget is the token bucket of one peer.
type retryBudget struct {
	tokens    atomic.Int64
	exhausted atomic.Bool // logged as run out, not yet refilled
}

func (r *retrier) budget(peer string) *retryBudget {
	if b, ok := r.budgets.Load(peer); ok {
		return b.(*retryBudget)
	}
	b := &retryBudget{}
	b.tokens.Store(r.full)
	v, _ := r.budgets.LoadOrStore(peer, b)
	return v.(*retryBudget)
}

// failed takes a token from b for a failed attempt, and reports whether
// enough are left to retry it.
func (r *retrier) failed(b *retryBudget) bool {
	for {
		t := b.tokens.Load()
		n := max(0, t-tokenScale)
		if b.tokens.CompareAndSwap(t, n) {
			return n > r.threshold
		}
	}
}

// succeeded gives b back its share of a success.
func (r *retrier) succeeded(b *retryBudget) {
	for {
		t := b.tokens.Load()
		if t >= r.full {
			return
		}
		n := min(r.full, t+r.refill)
		if b.tokens.CompareAndSwap(t, n) {
			if n > r.threshold {
				b.exhausted.Store(false)
			}
			return
		}
	}
}

func (r *retrier) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		spec := req.Spec()
		if !spec.IsClient || msgctx.ForRequest(ctx, req) != nil {
			return next(ctx, req)
		}
		if h := req.Header(); h[PreviousAttemptsHeader] != nil {
			// A request sent again after it was retried: this is its first
			// attempt. Deleted here, as connect writes its own headers when
			// a call starts, not when it ends: a call that its context
			// ended can return while net/http still writes its headers.
			delete(h, PreviousAttemptsHeader)
		}
		resp, err := next(ctx, req)
		if err == nil {
			r.succeeded(r.budget(req.Peer().Addr))
			return resp, nil
		}
		idempotent := spec.IdempotencyLevel == connect.IdempotencyNoSideEffects ||
			spec.IdempotencyLevel == connect.IdempotencyIdempotent
		var b *retryBudget
		for attempt := 1; ; attempt++ {
			if !r.retryable(ctx, err, idempotent) {
				return resp, err
			}
			if b == nil {
				b = r.budget(req.Peer().Addr)
			}
			// Every failure takes its token, as gRPC's throttling counts
			// them, but only a retry that was due is refused by the budget.
			// A call lost with its connection takes none: one server gone
			// (a Pod killed) says nothing of the load on the others, and
			// its calls in flight would spend the whole budget of the name.
			var enough bool
			if errors.Is(err, ErrConnectionLost) {
				enough = b.tokens.Load() > r.threshold
			} else {
				enough = r.failed(b)
			}
			if attempt >= r.cfg.maxAttempts {
				return resp, err
			}
			if !enough {
				r.refuse(ctx, req, b)
				return resp, err
			}
			wait, ok := r.wait(ctx, err, attempt)
			if !ok {
				return resp, err
			}
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, connect.NewError(codeOf(ctx.Err()), ctx.Err())
				case <-t.C:
				}
			}
			// Once the wait is over: a call canceled during it made no retry.
			r.record(ctx, req, attempt, err, wait)
			req.Header().Set(PreviousAttemptsHeader, strconv.Itoa(attempt))
			resp, err = next(ctx, req)
			if err == nil {
				r.succeeded(b)
				return resp, nil
			}
		}
	}
}

// retryable reports whether a call that failed with err may be made again,
// budget and attempts aside.
func (r *retrier) retryable(ctx context.Context, err error, idempotent bool) bool {
	if ctx.Err() != nil || errors.Is(err, ErrBreakerOpen) {
		return false
	}
	return idempotent && r.codes[codeOf(err)] || neverSent(err)
}

// neverSent reports whether err says that the request never left the
// client: net/http could not connect to the server, the server's name did
// not resolve (a balancing transport, such as kit's or httplb's, resolves
// apart from its dials and returns the resolver's error without the dial's
// *net.OpError around it), or the transport refused the call before
// sending it ([ErrNotSent]).
func neverSent(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) && op.Op == "dial" || errors.As(err, &dns) || errors.Is(err, ErrNotSent)
}

// wait returns how long to wait before the retry that follows attempt, or
// false when the call must not be retried: the server said so, or asked for
// a wait that is too long or that would reach the call's deadline.
func (r *retrier) wait(ctx context.Context, err error, attempt int) (time.Duration, bool) {
	ceiling := min(float64(r.cfg.initial)*math.Pow(r.cfg.multiplier, float64(attempt-1)), float64(r.cfg.maxBackoff))
	wait := time.Duration(rand.Float64() * ceiling)
	var ce *connect.Error
	if errors.As(err, &ce) {
		server, ok := serverWait(ce.Meta(), time.Now())
		if !ok || server > MaxRetryWait {
			return 0, false
		}
		wait = max(wait, server)
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
		return 0, false
	}
	return wait, true
}

// pushbackHeader is gRPC's retry pushback: the milliseconds to wait before
// a retry, or a negative or malformed value for none.
const pushbackHeader = "Grpc-Retry-Pushback-Ms"

// serverWait returns the wait a server asked for in meta (0 for none), or
// false when it asked for no retry.
func serverWait(meta http.Header, now time.Time) (time.Duration, bool) {
	var wait time.Duration
	if v := meta.Values(pushbackHeader); len(v) > 0 {
		ms, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || ms < 0 {
			return 0, false
		}
		wait = time.Duration(min(ms, int64(MaxRetryWait/time.Millisecond)+1)) * time.Millisecond
	}
	if v := meta.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
			wait = max(wait, time.Duration(min(s, int64(MaxRetryWait/time.Second)+1))*time.Second)
		} else if at, err := http.ParseTime(v); err == nil {
			wait = max(wait, at.Sub(now))
		}
	}
	return wait, true
}

// record counts, logs and traces the retry that follows attempt, as it
// starts, after its wait.
func (r *retrier) record(ctx context.Context, req connect.AnyRequest, attempt int, err error, wait time.Duration) {
	code := codeOf(err)
	peer, procedure := req.Peer().Addr, req.Spec().Procedure
	if r.retries != nil {
		r.retries.WithLabelValues(peer, procedure, code.String()).Inc()
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("retry", trace.WithAttributes(
			attribute.Int("rpc.attempt", attempt+1),
			attribute.String("rpc.connect_rpc.error_code", code.String()),
			attribute.Int64("rpc.retry.wait_ms", wait.Milliseconds())))
	}
	if r.logger != nil && r.logger.Enabled(ctx, slog.LevelDebug) {
		r.logger.LogAttrs(ctx, slog.LevelDebug, "retrying call",
			slog.String("peer", peer), slog.String("procedure", procedure),
			slog.Int("attempt", attempt+1), slog.String("code", code.String()),
			slog.Duration("retry_in", wait), slog.String("error", err.Error()))
	}
}

// refuse counts and logs a retry that b, out of tokens, refused.
func (r *retrier) refuse(ctx context.Context, req connect.AnyRequest, b *retryBudget) {
	peer, procedure := req.Peer().Addr, req.Spec().Procedure
	if r.throttled != nil {
		r.throttled.WithLabelValues(peer, procedure).Inc()
	}
	if r.logger != nil && b.exhausted.CompareAndSwap(false, true) {
		r.logger.LogAttrs(ctx, slog.LevelWarn, "retry budget exhausted: calls fail without retries until the peer succeeds again",
			slog.String("peer", peer), slog.String("procedure", procedure))
	}
}

func (r *retrier) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (r *retrier) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
