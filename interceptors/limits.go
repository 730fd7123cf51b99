package interceptors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	"github.com/connectkit/connectkit/internal/msgctx"
)

// alwaysExempt are the procedures that [RateLimit] and [MaxInFlight] never
// refuse: a health probe refused under load would have the orchestrator
// restart, or take out of rotation, an instance that is only busy, and
// reflection serves operators' tools.
var alwaysExempt = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

// RateLimit returns an interceptor that admits the calls a server handles
// at limit calls per second on average, in bursts of up to burst calls. It
// is a token bucket, golang.org/x/time/rate's: at most burst calls in any
// instant, and limit calls a second once the bucket is empty. A call over
// the limit fails at once, before its handler runs, with
// connect.CodeResourceExhausted (HTTP 429 for Connect clients, gRPC's
// RESOURCE_EXHAUSTED) and a message that states the limit, e.g. "rate limit
// exceeded: 100 calls/s, burst 20", and a Retry-After of the seconds until
// the bucket holds a call again (a response header for a Connect unary
// call, a trailer otherwise); it is not queued. A streaming call is
// counted once, when it starts.
//
// burst 0 takes one second's worth of calls, limit rounded up.
//
// RateLimit panics if limit is not positive (rate.Inf admits every call)
// or burst is negative. The rule, for RateLimit and [MaxInFlight] as for
// connect-go's constructors and time.NewTicker: a constructor without an
// error result panics on an argument that only a programming mistake
// gives (a constant in func main), and a value read from the environment,
// flags or a file must be checked before, so that it fails the start with
// an error naming it and never panics. kit.Config does that for
// KIT_RATE_LIMIT, KIT_RATE_LIMIT_BURST and KIT_MAX_INFLIGHT (Validate
// names the variable and its value); do the same with values of your own.
//
// The limit is one for the whole handler (or server) it wraps, unless
// [WithLimitPerProcedure] gives each procedure a bucket of its own. The
// gRPC health service ("/grpc.health.v1.Health/"), gRPC reflection and the
// deliveries of package pubsub's subscribers are never refused (their rate
// is bounded by the subscriber's Concurrency, and a refused delivery would
// spend one of its attempts); [WithExemptProcedures] exempts more.
// On a client it passes calls through: it limits what a server takes in.
//
// Place it inside [Logging] and [Metrics], so that refused calls are logged
// and counted with their code, and outside [Validation] and the
// application's interceptors, which then see only admitted calls:
//
//	c, _ := interceptors.Default(logger, reg)
//	connect.WithInterceptors(c.Tracing, c.RequestID, c.Logging, c.Metrics,
//		interceptors.RateLimit(100, 20), c.Recovery, c.Validation)
//
// kit.Server does so from KIT_RATE_LIMIT and KIT_RATE_LIMIT_BURST.
func RateLimit(limit rate.Limit, burst int, opts ...LimitOption) connect.Interceptor {
	if !(limit > 0) || burst < 0 {
		panic(fmt.Sprintf("interceptors: RateLimit(%v, %d): want a positive limit and a burst not negative", float64(limit), burst))
	}
	if burst == 0 {
		burst = int(min(math.Ceil(float64(limit)), math.MaxInt32))
	}
	cfg := newLimitConfig(opts)
	r := &rateLimiter{limitConfig: cfg, limit: limit, burst: burst}
	r.shared = rate.NewLimiter(limit, burst)
	perProcedure := ""
	if cfg.perProcedure {
		perProcedure = " per procedure"
	}
	r.refusal = fmt.Sprintf("rate limit exceeded: %s%s, burst %d", rateText(limit), perProcedure, burst)
	return r
}

// rateText says limit as its caller set it: "100 calls/s", or for a limit
// under one a second, "1 call every 1m0s" (rate.Every's argument).
func rateText(limit rate.Limit) string {
	switch {
	case limit >= 1 && limit < 1e15:
		return strconv.FormatFloat(float64(limit), 'f', -1, 64) + " calls/s"
	case limit >= 1 || limit < 1e-6: // once in more than 11 days: no Duration to print
		return strconv.FormatFloat(float64(limit), 'g', 6, 64) + " calls/s"
	}
	return "1 call every " + time.Duration(float64(time.Second)/float64(limit)).Round(time.Millisecond).String()
}

// MaxInFlight returns an interceptor that bounds the unary calls a server
// runs at once to n. A unary call that finds n running fails at once, before
// its handler runs, with connect.CodeUnavailable and the message "too many
// calls in flight: limit n". It is not queued: Unavailable tells gRPC
// clients with a retry policy, and load balancers, to try another instance,
// where a queue would only add its wait to a call that may then time out.
//
// Streaming calls hold no place: a stream's lifetime says nothing of the
// work it does (a watch stream idles for hours), and counting streams would
// let a few hundred idle watchers refuse every unary call of a process that
// does nothing. A stream that starts while n unary calls are running is
// refused as they are, since the process is then overloaded. Streams are
// bounded per connection by HTTP/2's concurrent streams setting
// (KIT_MAX_CONCURRENT_STREAMS in kit).
//
// MaxInFlight panics if n < 1, by [RateLimit]'s rule: check a value read
// from configuration before (kit.Config.Validate does for
// KIT_MAX_INFLIGHT), so that it fails the start with an error instead.
//
// The same procedures as [RateLimit]'s are exempt, and it acts on servers
// only. Place it as RateLimit, inside [Logging] and [Metrics].
func MaxInFlight(n int, opts ...LimitOption) connect.Interceptor {
	if n < 1 {
		panic(fmt.Sprintf("interceptors: MaxInFlight(%d): want at least 1", n))
	}
	cfg := newLimitConfig(opts)
	return &inFlightLimiter{limitConfig: cfg, max: int64(n),
		refusal: fmt.Sprintf("too many calls in flight: limit %d", n)}
}

// LimitOption configures [RateLimit] and [MaxInFlight].
type LimitOption interface {
	applyToLimit(cfg *limitConfig)
}

type limitOption func(*limitConfig)

func (o limitOption) applyToLimit(c *limitConfig) { o(c) }

// WithExemptProcedures exempts from [RateLimit] and [MaxInFlight] the
// procedures that procedures name. Each names one method ("/acme.v1.Uploads/Put":
// that method alone, not PutMany), a whole service ("/acme.v1.AdminService/",
// or "/acme.v1.AdminService" without the slash: that service alone, not
// "/acme.v1.AdminServiceV2/"), or a package by the prefix of its procedures,
// ending in "." ("/acme.v1."). The gRPC
// health service, reflection and pubsub deliveries are always exempt. Repeated
// options add up.
func WithExemptProcedures(procedures ...string) LimitOption {
	return limitOption(func(c *limitConfig) { c.exempt = append(c.exempt, procedures...) })
}

// WithLimitPerProcedure gives each procedure a [RateLimit] bucket of its
// own, of the limit and burst given: a flood of one method then leaves the
// others their rate. [MaxInFlight] ignores it: its bound protects the
// process, whose memory and CPU all procedures share.
func WithLimitPerProcedure() LimitOption {
	return limitOption(func(c *limitConfig) { c.perProcedure = true })
}

type limitConfig struct {
	exempt       []string     // as given to WithExemptProcedures
	exemptSet    procedureSet // exempt, with alwaysExempt
	perProcedure bool
}

func newLimitConfig(opts []LimitOption) limitConfig {
	var cfg limitConfig
	cfg.exempt = append(cfg.exempt, alwaysExempt...)
	for _, o := range opts {
		o.applyToLimit(&cfg)
	}
	cfg.exemptSet = newProcedureSet(cfg.exempt)
	return cfg
}

// limited reports whether a streaming server call of spec, in ctx, is
// subject to the limit: not a client's, not an exempt procedure, not a
// pubsub delivery.
func (c *limitConfig) limited(ctx context.Context, spec connect.Spec, peer connect.Peer) bool {
	return c.limitedProcedure(spec) && msgctx.ForCall(ctx, spec, peer) == nil
}

// limitedUnary is limited for a unary call, which pubsub's request of a
// delivery tells for one whatever its context (an interceptor before may
// have called on with a context of its own).
func (c *limitConfig) limitedUnary(ctx context.Context, req connect.AnyRequest) bool {
	return c.limitedProcedure(req.Spec()) && msgctx.ForRequest(ctx, req) == nil
}

// limitedProcedure reports whether a call of spec is subject to the limit
// unless it is a pubsub delivery: not a client's, not an exempt procedure.
func (c *limitConfig) limitedProcedure(spec connect.Spec) bool {
	return !spec.IsClient && !c.exemptSet.contains(spec.Procedure)
}

type rateLimiter struct {
	limitConfig
	limit   rate.Limit
	burst   int
	shared  *rate.Limiter
	byProc  sync.Map // procedure → *rate.Limiter, with perProcedure
	refusal string
}

// admit returns nil when a call of procedure may start now, and its
// refusal otherwise.
func (r *rateLimiter) admit(procedure string) error {
	l := r.shared
	if r.perProcedure {
		v, ok := r.byProc.Load(procedure)
		if !ok {
			// The procedures are those the handler serves: connect routes
			// no other to it, so the map stays as small as the service.
			v, _ = r.byProc.LoadOrStore(procedure, rate.NewLimiter(r.limit, r.burst))
		}
		l = v.(*rate.Limiter)
	}
	if l.Allow() {
		return nil
	}
	err := connect.NewError(connect.CodeResourceExhausted, errors.New(r.refusal))
	// When the bucket holds a call again, in whole seconds (RFC 9110's
	// Retry-After): a response header of a Connect unary call, a trailer
	// otherwise. Other clients may take that call first.
	wait := math.Ceil((1 - l.Tokens()) / float64(r.limit))
	err.Meta().Set("Retry-After", strconv.Itoa(int(max(1, min(wait, maxRetryAfter)))))
	return err
}

// maxRetryAfter caps Retry-After, in seconds: a day.
const maxRetryAfter = 24 * 60 * 60

func (r *rateLimiter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if r.limitedUnary(ctx, req) {
			if err := r.admit(req.Spec().Procedure); err != nil {
				return nil, err
			}
		}
		return next(ctx, req)
	}
}

func (r *rateLimiter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if spec := conn.Spec(); r.limited(ctx, spec, conn.Peer()) {
			if err := r.admit(spec.Procedure); err != nil {
				return err
			}
		}
		return next(ctx, conn)
	}
}

func (r *rateLimiter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

type inFlightLimiter struct {
	limitConfig
	max     int64
	running atomic.Int64 // unary calls admitted and not returned
	refusal string
}

func (l *inFlightLimiter) refuse() error {
	return connect.NewError(connect.CodeUnavailable, errors.New(l.refusal))
}

func (l *inFlightLimiter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if !l.limitedUnary(ctx, req) {
			return next(ctx, req)
		}
		if l.running.Add(1) > l.max {
			l.running.Add(-1)
			return nil, l.refuse()
		}
		defer l.running.Add(-1) // also when a panic goes through
		return next(ctx, req)
	}
}

func (l *inFlightLimiter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if l.limited(ctx, conn.Spec(), conn.Peer()) && l.running.Load() >= l.max {
			return l.refuse()
		}
		return next(ctx, conn)
	}
}

func (l *inFlightLimiter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}
