package interceptors

import (
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"connectrpc.com/validate"
	"github.com/prometheus/client_golang/prometheus"
)

// Chain is the default interceptor chain, piece by piece. A piece is nil
// when it was opted out of. [Chain.Server] and [Chain.Client] give the
// documented orders; to reorder, list the fields in the order you want.
type Chain struct {
	Tracing        connect.Interceptor // [Tracing]
	RequestID      connect.Interceptor // [RequestID]
	Logging        connect.Interceptor // [Logging]
	Metrics        connect.Interceptor // [Metrics]
	Recovery       connect.Interceptor // [Recovery]
	ForwardHeaders connect.Interceptor // [ForwardHeaders], nil without [WithForwardHeaders]
	Validation     connect.Interceptor // [Validation]
}

// Default builds the default chain, with logger for Logging and Recovery
// and reg for Metrics. Opt out of a piece with [WithoutTracing],
// [WithoutRequestID], [WithoutLogging], [WithoutMetrics], [WithoutRecovery]
// or [WithoutValidation] (reg may then be nil); configure one with its own
// options ([LoggingOption], [MetricsOption], [TracingOption],
// [WithValidateOptions]). [WithForwardHeaders] adds [ForwardHeaders].
//
// The server order, outermost first, is:
//
//	Tracing → RequestID → Logging → Metrics → Recovery → ForwardHeaders → Validation → your interceptors → handler
//
// Tracing comes first so that the span covers the whole call and is in the
// context when Logging writes its line (trace_id, span_id) and when
// handlers log. RequestID comes before Logging, which logs the id.
// Logging and Metrics wrap Recovery, so that a panic reaches them as an
// Internal error that they log (once, with the stack) and count; they also
// see calls that Validation rejects, so invalid requests are logged, counted
// and traced as InvalidArgument. Recovery wraps Validation and your
// interceptors, so their panics are recovered too. Validation comes before
// your interceptors, which see only valid messages, as the handler does.
// [RateLimit] and [MaxInFlight], not part of the chain, go right after
// Metrics.
//
// Add your interceptors by appending them to [Chain.Server] or
// [Chain.Client]: connect runs the first interceptor of the list outermost.
//
// Keep Logging right after RequestID when you reorder the pieces: the two
// then share one allocation per served unary call.
func Default(logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Chain, error) {
	var cfg chainConfig
	for _, opt := range opts {
		opt.applyToChain(&cfg)
	}
	var c Chain
	var err error
	if !cfg.without[pieceTracing] {
		if c.Tracing, err = Tracing(cfg.tracing...); err != nil {
			return nil, err
		}
	}
	if !cfg.without[pieceRequestID] {
		c.RequestID = RequestID()
		if !cfg.without[pieceLogging] {
			// Logging comes right after it in Server's order.
			c.RequestID = requestIDBeforeLogging()
		}
	}
	if !cfg.without[pieceLogging] {
		c.Logging = Logging(logger, cfg.logging...)
	}
	if !cfg.without[pieceMetrics] {
		if reg == nil {
			return nil, errors.New("interceptors: Default needs a prometheus.Registerer, or WithoutMetrics")
		}
		if c.Metrics, err = Metrics(reg, cfg.metrics...); err != nil {
			return nil, err
		}
	}
	if !cfg.without[pieceRecovery] {
		c.Recovery = Recovery(logger)
	}
	if len(cfg.forward) > 0 {
		if c.ForwardHeaders, err = ForwardHeaders(cfg.forward...); err != nil {
			return nil, err
		}
	}
	if !cfg.without[pieceValidation] {
		c.Validation = Validation(cfg.validate...)
	}
	return &c, nil
}

// Server returns the server chain, outermost first: Tracing, RequestID,
// Logging, Metrics, Recovery, ForwardHeaders, Validation, without the
// pieces that are nil. Give it to a handler with connect.WithInterceptors.
func (c *Chain) Server() []connect.Interceptor {
	return nonNil(c.Tracing, c.RequestID, c.Logging, c.Metrics, c.Recovery, c.ForwardHeaders, c.Validation)
}

// Client returns the matching chain for outgoing calls, outermost first. It
// holds Tracing (a client span whose context is injected in the request
// headers), RequestID (the id of the call being served, a publish's message id,
// or a new one), Logging, Metrics (grpc_client_* series) and ForwardHeaders
// (the headers of the call being served). Recovery has
// nothing to do on clients and Validation is left out because a client's schema
// may be older than the server's; add c.Validation yourself to check requests
// before sending them.
func (c *Chain) Client() []connect.Interceptor {
	return nonNil(c.Tracing, c.RequestID, c.Logging, c.Metrics, c.ForwardHeaders)
}

func nonNil(all ...connect.Interceptor) []connect.Interceptor {
	out := make([]connect.Interceptor, 0, len(all))
	for _, i := range all {
		if i != nil {
			out = append(out, i)
		}
	}
	return out
}

// WithoutTracing leaves [Tracing] out of [Default]'s chain.
func WithoutTracing() Option { return without(pieceTracing) }

// WithoutRequestID leaves [RequestID] out of [Default]'s chain.
func WithoutRequestID() Option { return without(pieceRequestID) }

// WithoutLogging leaves [Logging] out of [Default]'s chain; [Recovery] then
// logs panics itself.
func WithoutLogging() Option { return without(pieceLogging) }

// WithoutMetrics leaves [Metrics] out of [Default]'s chain: nothing is
// registered, and the registry may be nil.
func WithoutMetrics() Option { return without(pieceMetrics) }

// WithoutRecovery leaves [Recovery] out of [Default]'s chain. A panic then
// reaches net/http, which logs it on the server's ErrorLog and aborts the
// response (it closes an HTTP/1.x connection, and resets the call's stream
// of an HTTP/2 one: a connect client gets Unavailable or Internal), and no
// interceptor logs or counts the call.
func WithoutRecovery() Option { return without(pieceRecovery) }

// WithoutValidation leaves [Validation] out of [Default]'s chain.
func WithoutValidation() Option { return without(pieceValidation) }

// WithValidateOptions passes options to connectrpc.com/validate in
// [Default]'s [Validation] (none by default). With a validator of your own
// ([validate.WithValidator]), protovalidate's global validator is not
// built (see [Validation]).
func WithValidateOptions(opts ...validate.Option) Option {
	return chainOption(func(c *chainConfig) { c.validate = append(c.validate, opts...) })
}

// WithForwardHeaders adds [ForwardHeaders] of names to [Default]'s chain,
// on both sides: the headers of a call that match names ("x-md-global-*",
// "x-tenant") go with every call and publish its handler makes through
// clients built with [Chain.Client]. Repeated options add up. None by
// default: the chain forwards only the trace context, baggage and
// X-Request-Id.
func WithForwardHeaders(names ...string) Option {
	return chainOption(func(c *chainConfig) { c.forward = append(c.forward, names...) })
}

type piece int

const (
	pieceTracing piece = iota
	pieceRequestID
	pieceLogging
	pieceMetrics
	pieceRecovery
	pieceValidation
	pieceCount
)

func without(p piece) Option {
	return chainOption(func(c *chainConfig) { c.without[p] = true })
}

type chainConfig struct {
	without  [pieceCount]bool
	tracing  []TracingOption
	logging  []LoggingOption
	metrics  []MetricsOption
	validate []validate.Option
	forward  []string
}
