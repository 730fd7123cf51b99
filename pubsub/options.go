package pubsub

import (
	"log/slog"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a [Publisher] or a [Subscriber]. Every option is
// accepted by both constructors and ignored where it does not apply (said on
// each), so that func main can build one []Option with the chain, logger and
// registry and pass it to every publisher and subscriber.
type Option interface {
	apply(*config)
}

type config struct {
	logger         *slog.Logger
	registry       prometheus.Registerer
	clientOptions  []connect.ClientOption
	handlerOptions []connect.HandlerOption
	json           bool
	noValidation   bool
	validator      protovalidate.Validator // of messages with rules; protovalidate's global one
	delivery       DeliveryConfig
	replay         bool
	replaySince    time.Time
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		o.apply(&c)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.validator == nil {
		c.validator = protovalidate.GlobalValidator
	}
	return c
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLogger sets the logger of what happens outside the interceptor chain:
// dead letters, verdicts that could not be sent, subscriptions that cannot
// start, a NewPublisher held by protovalidate's validator build. Default:
// [slog.Default], read when the publisher or subscriber is made, so that
// these warnings are seen even where no logger was given; kit users pass
// srv.Logger(), so that they are kit's lines, in its format and at its
// level. The per-message log line is the chain's logging interceptor's
// job.
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = logger })
}

// WithRegistry registers pubsub's own metrics (pubsub_redelivered_total,
// pubsub_given_back_total, pubsub_late_copies_total,
// pubsub_dead_lettered_total, pubsub_publish_errors_total,
// pubsub_ack_errors_total, pubsub_dead_letter_errors_total) with reg.
// Publishers and subscribers sharing a registry share the metrics. Default:
// the metrics are kept but not registered anywhere.
func WithRegistry(reg prometheus.Registerer) Option {
	return optionFunc(func(c *config) { c.registry = reg })
}

// WithClientOptions sets the connect client options under which a
// [Publisher] presents each publish to the interceptor chain, as a unary
// call. Pass srv.ClientOptions()... so that the client chain (tracing
// injecting traceparent, metrics, logging, auth headers) runs around every
// publish. The options must keep connect's default Connect protocol and
// its proto or JSON codec: NewPublisher rejects connect.WithGRPC,
// connect.WithGRPCWeb and codecs of other names. Only the options'
// interceptors apply to messages: a publish is handed to the chain that
// connect builds from them, without crossing connect's client, and ends in
// pubsub's innermost interceptor, which gives the message to the broker;
// compression and send size limits do not apply. The headers the chain sets
// travel with the message, as do those of a context made by
// connect.NewClientContext. Ignored by subscribers.
func WithClientOptions(opts ...connect.ClientOption) Option {
	return optionFunc(func(c *config) { c.clientOptions = append(c.clientOptions, opts...) })
}

// WithHandlerOptions sets the connect handler options under which a
// [Subscriber] presents each delivery to the interceptor chain, as a unary
// call. Pass srv.HandlerOptions()... so that the RPC chain (recovery,
// logging, metrics, tracing, validation, auth) runs around every handler.
// Only the options' interceptors apply to messages: a delivery is handed to
// the chain that connect builds from them, without crossing connect's HTTP
// handling, so options that act below the interceptors (read limits,
// compression, codecs, connect.WithRecover) do not, and
// connect.CallInfoForHandlerContext reports false in a subscriber's
// handler ([MessageInfoFrom] gives the message's headers). Options given
// in several WithHandlerOptions add up, in order: one subscriber's own
// interceptor (Watermill's per-handler middleware) goes after the shared
// chain, append(opts, WithHandlerOptions(connect.WithInterceptors(mw))),
// and runs inside it. Ignored by publishers.
func WithHandlerOptions(opts ...connect.HandlerOption) Option {
	return optionFunc(func(c *config) { c.handlerOptions = append(c.handlerOptions, opts...) })
}

// WithJSON makes a [Publisher] encode messages as protobuf JSON
// (Content-Type application/json) instead of the default protobuf binary.
// Subscribers accept both encodings whatever the option. Ignored by
// subscribers.
func WithJSON() Option {
	return optionFunc(func(c *config) { c.json = true })
}

// WithoutValidation turns off the protovalidate check that a [Publisher]
// runs, as the innermost interceptor of its chain, on every message it
// publishes. Use it when the client chain of WithClientOptions already
// validates requests. Ignored by subscribers, which validate only if their
// handler chain does.
func WithoutValidation() Option {
	return optionFunc(func(c *config) { c.noValidation = true })
}

// WithDelivery sets how a [Subscriber] handles its messages: concurrency,
// attempts, backoff, ack wait, drain timeout. Default: the zero
// [DeliveryConfig], whose fields document their defaults. Ignored by
// publishers.
func WithDelivery(cfg DeliveryConfig) Option {
	return optionFunc(func(c *config) { c.delivery = cfg })
}

// WithReplay makes a [Subscriber] replay its topic in each instance. Every
// instance running it receives every message of the topic, beginning with
// the oldest the broker retains (natsjs: up to NATS_MAX_AGE; mem: see
// package mem), instead of sharing the messages of a durable subscription
// with the other instances and resuming where they left off. It is for
// state kept in memory and built again at each start from another
// service's events (a search index, a cache). The broker's consumer is the
// instance's own: natsjs deletes it when Run returns, and the server
// deletes one left behind by a crashed instance once it was inactive for
// natsjs's Config.ReplayInactiveThreshold. The subscription name is still
// required: it labels the subscription's logs, metrics and spans, the
// same in every instance and every start.
//
// The subscriber's Check fails until every message that the topic retained
// when Run subscribed has been handled (acknowledged, or given up on), so
// that readiness stays NOT_SERVING until the state is built; the
// subscriber logs "pubsub: replay caught up", with how long it took, once
// it has (asking the broker every second until then). Failed
// messages are retried in place, with DeliveryConfig's Backoff and
// MaxAttempts; a message given up on (its attempts used up, an error
// marked [Permanent], a message that does not decode) is logged at error
// and counted in pubsub_dead_lettered_total, but is not stored as a dead
// letter, which could be re-driven to no instance but one that exists no
// more: the next start replays it. Do not wrap its handler in [Idempotent]
// with a store that the instances share (natsjs.NewIdempotencyStore): the
// key is the subscription's, so it would skip every message that another
// instance, or an earlier start, handled. Default: off (a durable, shared
// subscription). Ignored by publishers.
func WithReplay() Option {
	return optionFunc(func(c *config) { c.replay, c.replaySince = true, time.Time{} })
}

// WithReplaySince is [WithReplay] beginning with the first message that the
// broker stored at since or later, rather than with the oldest it retains.
// A zero since is WithReplay. Ignored by publishers.
func WithReplaySince(since time.Time) Option {
	return optionFunc(func(c *config) { c.replay, c.replaySince = true, since })
}
