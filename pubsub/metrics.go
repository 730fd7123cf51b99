package pubsub

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts what happens to messages outside the interceptor chain; the
// chain's metrics interceptor counts publishes and handlings
// (pubsub_published_total, pubsub_handled_total, pubsub_handling_seconds,
// pubsub_panics_recovered_total).
type metrics struct {
	redelivered   *prometheus.CounterVec // topic, subscription
	givenBack     *prometheus.CounterVec // topic, subscription
	lateCopies    *prometheus.CounterVec // topic, subscription
	deadLettered  *prometheus.CounterVec // topic, subscription, reason
	publishErrors *prometheus.CounterVec // topic
	ackErrors     *prometheus.CounterVec // topic, subscription
	// deadLetterErrors: topic, subscription, code (the Connect code of the
	// broker's error, as a publish's)
	deadLetterErrors *prometheus.CounterVec
	backlog          *backlogCollector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pubsub_redelivered_total",
			Help: "Deliveries of messages that had been delivered to the subscription before (after a failure, a timeout or a crash).",
		}, []string{"topic", "subscription"}),
		givenBack: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pubsub_given_back_total",
			Help: "Deliveries given back to the broker unhandled, because a handler of this process still ran their message (it overran AckWait); each comes again after AckWait.",
		}, []string{"topic", "subscription"}),
		lateCopies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pubsub_late_copies_total",
			Help: "Deliveries acknowledged without a handler, because they were copies of a message this process had already settled (they came after its verdict: it waited longer than AckWait, or a handler overran AckWait).",
		}, []string{"topic", "subscription"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pubsub_dead_lettered_total",
			Help: "Messages moved to the dead-letter destination, by reason: max_attempts, permanent, type_mismatch, undecodable.",
		}, []string{"topic", "subscription", "reason"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pubsub_publish_errors_total",
			Help: "Asynchronous publishes that the broker did not confirm (synchronous ones are counted by the interceptor chain).",
		}, []string{"topic"}),
		ackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pubsub_ack_errors_total",
			Help: "Verdicts (ack, nak, term) or dead letters that could not be sent to the broker; the message is delivered again.",
		}, []string{"topic", "subscription"}),
		deadLetterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pubsub_dead_letter_errors_total",
			Help: "Dead letters that the broker did not store, by the Connect code of its error (resource_exhausted: the dead-letter destination's limits refuse it); the message is delivered again.",
		}, []string{"topic", "subscription", "code"}),
		backlog: newBacklogCollector(),
	}
	if reg == nil {
		return m, nil
	}
	var already prometheus.AlreadyRegisteredError
	if err := reg.Register(m.backlog); errors.As(err, &already) {
		existing, ok := already.ExistingCollector.(*backlogCollector)
		if !ok {
			return nil, fmt.Errorf("pubsub: failed to register metrics: %w", err)
		}
		m.backlog = existing
	} else if err != nil {
		return nil, fmt.Errorf("pubsub: failed to register metrics: %w", err)
	}
	for _, c := range []**prometheus.CounterVec{&m.redelivered, &m.givenBack, &m.lateCopies, &m.deadLettered, &m.publishErrors, &m.ackErrors, &m.deadLetterErrors} {
		registered, err := register(reg, *c)
		if err != nil {
			return nil, err
		}
		*c = registered
	}
	return m, nil
}

// reasons are the values of the reason label of pubsub_dead_lettered_total.
var reasons = [...]Reason{ReasonMaxAttempts, ReasonPermanent, ReasonTypeMismatch, ReasonUndecodable}

// subscription makes the series of a subscription's redeliveries,
// deliveries given back, late copies, dead letters (one per reason) and
// failed verdicts, at 0. A series that first appears at 1 is no increase
// to rate() or increase(), so an alert on them would miss the first dead
// letter of each process: often the only one.
func (m *metrics) subscription(topic, name string) {
	m.redelivered.WithLabelValues(topic, name)
	m.givenBack.WithLabelValues(topic, name)
	m.lateCopies.WithLabelValues(topic, name)
	m.ackErrors.WithLabelValues(topic, name)
	for _, r := range reasons {
		m.deadLettered.WithLabelValues(topic, name, string(r))
	}
	for _, c := range deadLetterCodes {
		m.deadLetterErrors.WithLabelValues(topic, name, c.String())
	}
}

// deadLetterCodes are the codes of pubsub_dead_letter_errors_total whose
// series are made at 0 (see subscription): a destination's limits, and
// a broker out of reach.
var deadLetterCodes = [...]connect.Code{connect.CodeResourceExhausted, connect.CodeUnavailable}

// publisher makes the series of a publisher's failed confirmations, at 0
// (see subscription).
func (m *metrics) publisher(topic string) {
	m.publishErrors.WithLabelValues(topic)
}

// register registers c, or returns the identical collector that another
// publisher or subscriber registered before.
func register(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	return nil, fmt.Errorf("pubsub: failed to register metrics: %w", err)
}
