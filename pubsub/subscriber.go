package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Subscriber handles the messages of one subscription of one topic. Create
// it with [NewSubscriber] and run it with Run, typically under kit's
// lifecycle: srv.Go(sub.Run).
//
// Every instance (process) running a subscriber with the same topic and
// subscription name shares the subscription's messages: each message goes to
// one of them; with [WithReplay], each gets them all instead.
type Subscriber struct {
	broker   Broker
	system   string
	server   func() string // the broker's ServerAddress, when it has one
	topic    string
	name     string
	typeName string
	cfg      DeliveryConfig
	replay   bool      // WithReplay: a consumer of each Run's own
	since    time.Time // WithReplaySince
	call     callFunc
	newState stateFunc
	metrics  *metrics
	logger   *slog.Logger

	started atomic.Bool
	state   atomic.Pointer[error]  // nil: consuming; else why not
	fault   atomic.Pointer[faulty] // the running consumer, if it reports faults
	// replayer is the running consumer of a replaying subscription, until
	// it caught up.
	replayer atomic.Pointer[Replayer]
	caughtUp atomic.Bool
	replayAt time.Time // when Run's replay began consuming

	waits handOffWaits
	late  lateCopies
	given givenBack
	// running is what each worker runs, made by Run before the workers.
	running runningMessages
	known   *knownValues // of the handlers' context, which Run makes
}

// faulty is a Consumer that reports faults (see [Consumer]).
type faulty interface{ Err() error }

var (
	errNotStarted = errors.New("not started")
	// errSubscribing is the state while Run's first Subscribe runs, which
	// may wait (for a broker's first connection, say): Check then adds
	// the broker's own failure, which says why.
	errSubscribing = errors.New("subscribing")
	errRunTwice    = errors.New("pubsub: Subscriber.Run called twice")
	errNoReplay    = errors.New("the broker's consumer cannot tell whether a replay caught up (no CaughtUp method)")
)

// NewSubscriber returns a subscriber that calls handle with each message of
// topic delivered to the durable subscription named subscription on b.
// With [WithReplay], the messages go to a consumer of each instance's own,
// which subscription names in logs, metrics and spans.
// M is a generated message struct (*M implements proto.Message), inferred
// from handle.
//
// A handler returning nil acknowledges the message. An error schedules a
// redelivery after a backoff; an error marked [Permanent] (or with Connect
// code InvalidArgument, FailedPrecondition, OutOfRange or Unimplemented),
// the last allowed attempt, a message of another type or one that does not
// decode sends the message to the dead-letter destination. A panic is an
// Internal error (recovered by the chain's recovery interceptor if it has
// one); a dead letter's Error names the panic value.
//
// Each delivery runs through the handler chain of [WithHandlerOptions] as a
// unary call to [Procedure](topic, subscription), with the message's headers
// as request headers. The handler's context carries the chain's values and a
// [MessageInfo]; its deadline is DeliveryConfig.AckWait from the handler's
// start (less the time the message waited since its fetch, when that was
// under a tenth of AckWait: see DeliveryConfig.AckWait). A message of another
// type, of an unknown content type or encoding, whose payload does not
// decode, or delivered past its last attempt is dead-lettered before the
// chain, which never sees it (no log line, metric or span of the chain's):
// the logger of [WithLogger] and pubsub_dead_lettered_total record it, as they
// do every dead letter.
func NewSubscriber[M any](b Broker, topic, subscription string, handle func(context.Context, *M) error, opts ...Option) (*Subscriber, error) {
	if b == nil {
		return nil, errors.New("pubsub: NewSubscriber: broker is nil")
	}
	if handle == nil {
		return nil, errors.New("pubsub: NewSubscriber: handler is nil")
	}
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	if err := ValidateSubscription(subscription); err != nil {
		return nil, err
	}
	typeName, err := messageName[M]()
	if err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	if err := cfg.delivery.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.registry)
	if err != nil {
		return nil, err
	}
	procedure := Procedure(topic, subscription)
	s := &Subscriber{
		broker:   b,
		system:   b.System(),
		server:   serverAddress(b),
		topic:    topic,
		name:     subscription,
		typeName: typeName,
		cfg:      cfg.delivery.withDefaults(),
		replay:   cfg.replay,
		since:    cfg.replaySince,
		metrics:  m,
		logger:   cfg.logger.With("topic", topic, "subscription", subscription),
	}
	// A copy waits behind its message in the buffer at most while the
	// handlers take Prefetch messages, each for AckWait at most.
	s.late.keep = time.Duration(s.cfg.Prefetch/s.cfg.Concurrency+2) * s.cfg.AckWait
	// A retry comes after its backoff (at most twice Backoff.Max, with
	// jitter), then may wait in the buffer as long as a copy.
	s.given.keep = 2*s.cfg.Backoff.withDefaults().Max + s.late.keep
	s.state.Store(&errNotStarted)
	if s.call, s.newState, err = chainOf(procedure, handle, cfg.handlerOptions); err != nil {
		return nil, err
	}
	m.subscription(topic, subscription)
	return s, nil
}

// Topic returns the subscriber's topic.
func (s *Subscriber) Topic() string { return s.topic }

// Subscription returns the subscriber's subscription name.
func (s *Subscriber) Subscription() string { return s.name }

// Check reports whether the subscriber is consuming: a readiness check. It
// fails before Run has set up the subscription (with the broker's own
// Check's error while Run waits on the broker, one not connected yet say),
// while the broker refuses it or fails its own Check, and after Run
// returned. A replaying subscriber's ([WithReplay]) also fails until the
// messages that the topic retained when Run subscribed are handled. In a kit
// service, register it, and the broker's, on the server's health model:
//
//	err := srv.Health().AddCheck(health.Check{Name: "audit-subscriber", Func: sub.Check})
func (s *Subscriber) Check(ctx context.Context) error {
	if err := s.state.Load(); err != nil {
		if *err == errSubscribing {
			if berr := s.broker.Check(ctx); berr != nil {
				return fmt.Errorf("pubsub: subscription %s on %s is not consuming: %w: %w", s.name, s.topic, *err, berr)
			}
		}
		return fmt.Errorf("pubsub: subscription %s on %s is not consuming: %w", s.name, s.topic, *err)
	}
	if f := s.fault.Load(); f != nil {
		if err := (*f).Err(); err != nil {
			return fmt.Errorf("pubsub: subscription %s on %s is not consuming: %w", s.name, s.topic, err)
		}
	}
	if err := s.broker.Check(ctx); err != nil {
		return fmt.Errorf("pubsub: subscription %s on %s: %w", s.name, s.topic, err)
	}
	return s.checkCaughtUp(ctx)
}

// checkCaughtUp fails while a replaying subscriber has not handled the
// backlog of its start. Once it has, it asks the broker no more.
func (s *Subscriber) checkCaughtUp(ctx context.Context) error {
	if !s.replay || s.caughtUp.Load() {
		return nil
	}
	r := s.replayer.Load()
	if r == nil { // Run returned meanwhile
		return fmt.Errorf("pubsub: subscription %s on %s is not consuming", s.name, s.topic)
	}
	done, err := (*r).CaughtUp(ctx)
	if err != nil {
		return fmt.Errorf("pubsub: subscription %s on %s is replaying: %w", s.name, s.topic, err)
	}
	if !done {
		return fmt.Errorf("pubsub: subscription %s on %s is replaying: the messages the topic held at its start are not all handled yet", s.name, s.topic)
	}
	if s.caughtUp.CompareAndSwap(false, true) {
		s.logger.Info("pubsub: replay caught up", "duration", time.Since(s.replayAt))
	}
	return nil
}

// catchUpPoll is how often a replaying subscriber asks its consumer
// whether it caught up, so that its log tells when the replay ended
// whether or not anything calls Check meanwhile.
const catchUpPoll = time.Second

// watchCatchUp asks, every catchUpPoll until ctx is done, whether the
// replay caught up, until it has.
func (s *Subscriber) watchCatchUp(ctx context.Context) {
	t := time.NewTicker(catchUpPoll)
	defer t.Stop()
	for !s.caughtUp.Load() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		askCtx, cancel := context.WithTimeout(ctx, catchUpPoll)
		_ = s.checkCaughtUp(askCtx) // its failures say only "not yet"
		cancel()
	}
}

// Run consumes the subscription until ctx is done, then drains it and
// returns nil. Draining stops fetching, lets the handlers finish the
// messages in flight and those already fetched, for up to
// DeliveryConfig.DrainTimeout (then it hands back what no handler took, and
// abandons the handlers still running: their messages are delivered again
// after AckWait), and makes sure the verdicts reached the broker, within
// DrainTimeout plus a second at most, even when the broker does not answer.
// While the broker refuses the subscription, Run logs why (at error once
// per cause, then at debug; at info once it subscribed) and tries again
// with a backoff (Check fails meanwhile, with the latest refusal); a broker closed already
// ([ErrClosed]) makes Run return that error at once, which stops a
// kit.Server that runs it. Run may be called once.
func (s *Subscriber) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errRunTwice
	}
	stopped := errors.New("stopped")
	defer s.state.Store(&stopped)

	// The hand-off to the workers takes plain channel operations where it
	// can: the selects on work and stop that it made on both sides cost
	// ~1 000 instructions per message more (callgrind, BENCHMARKS.md
	// section 3).
	work := make(chan handOff)  // a nil Delivery stops the worker that takes it
	stop := make(chan struct{}) // closed once the consumer drained: deliver hands back
	// Handlers outlive ctx by up to DrainTimeout.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	s.known = knownValuesOf(handlerCtx, chainKeys())
	s.waits.init(s.cfg.Prefetch)
	s.running = make(runningMessages, s.cfg.Concurrency)
	var workers sync.WaitGroup
	for slot := range s.cfg.Concurrency {
		workers.Go(func() {
			for h := <-work; h.d != nil; h = <-work {
				s.handle(handlerCtx, h.d, s.waits.waited(h), slot)
			}
		})
	}
	stopWorkers := func() {
		for range s.cfg.Concurrency {
			work <- handOff{}
		}
		workers.Wait()
	}
	deliver := func(d Delivery) {
		if d == nil { // it would stop a worker
			panic("pubsub: the broker delivered a nil Delivery")
		}
		// Selects of one case and a default are the cheap ones.
		select {
		case <-stop:
			s.handBack(d)
			return
		default:
		}
		h, slot := s.waits.begin(d)
		select {
		case work <- h: // a worker was waiting
			s.waits.end(slot, 0)
			return
		default:
		}
		// Every worker is busy: d waits, and so do the messages fetched
		// after it. The clock is read only here, where deliver blocks.
		h.blocked, h.blockedAt = true, s.waits.now()
		select {
		case work <- h:
		case <-stop:
			s.handBack(d)
		}
		s.waits.end(slot, s.waits.now()-h.blockedAt)
	}
	consumer, err := s.subscribe(ctx, deliver)
	if err != nil {
		close(stop)
		stopWorkers()
		return fmt.Errorf("pubsub: subscription %q on %q: %w", s.name, s.topic, err)
	}
	if f, ok := consumer.(faulty); ok {
		s.fault.Store(&f)
		defer s.fault.Store(nil)
	}
	if s.replay && consumer != nil {
		r, ok := consumer.(Replayer)
		if !ok {
			// Nothing is handled: what the consumer fetched goes back.
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
			defer cancel()
			close(stop)
			_ = consumer.Drain(closeCtx)
			stopWorkers()
			_ = consumer.Close(closeCtx)
			return fmt.Errorf("pubsub: subscription %q on %q: %w", s.name, s.topic, errNoReplay)
		}
		s.replayAt = time.Now()
		s.replayer.Store(&r)
		defer s.replayer.Store(nil)
		var watching sync.WaitGroup
		watchCtx, stopWatching := context.WithCancel(ctx)
		watching.Go(func() { s.watchCatchUp(watchCtx) })
		defer watching.Wait()
		defer stopWatching()
	}
	if b, ok := consumer.(backlogged); ok {
		s.metrics.backlog.add(s.topic, s.name, b)
		defer s.metrics.backlog.remove(s.topic, s.name, b)
	}
	<-ctx.Done()
	s.state.Store(&stopped)

	// Stop fetching; the workers handle what was fetched already. Then let
	// them finish, and hand back what a worker could not take in time.
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	if consumer != nil {
		if err := consumer.Drain(drainCtx); err != nil {
			s.logger.Warn("pubsub: failed to drain the subscription; messages fetched and not handled will be delivered again", "error", err)
		}
	}
	close(stop)
	done := make(chan struct{})
	go func() { stopWorkers(); close(done) }()
	select {
	case <-done:
	case <-drainCtx.Done():
		// After a drain that used up the time (a broker that does not
		// answer), idle workers need a moment to take their nil Delivery:
		// no warning for them.
		grace := time.NewTimer(50 * time.Millisecond)
		select {
		case <-done:
		case <-grace.C:
			s.logger.Warn("pubsub: handlers still running after the drain timeout; their messages will be delivered again", "drain_timeout", s.cfg.DrainTimeout)
			cancelHandlers()
		}
		grace.Stop()
	}
	if consumer != nil {
		// The flush shares DrainTimeout, so that Run returns within it (plus
		// a second at most for the verdicts of handlers that finished late),
		// whatever the broker does.
		deadline, _ := drainCtx.Deadline()
		closeCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), later(deadline, time.Now().Add(min(time.Second, s.cfg.DrainTimeout))))
		defer cancel()
		if err := consumer.Close(closeCtx); err != nil {
			s.logger.Warn("pubsub: failed to flush verdicts", "error", err)
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// subscribe sets up the consumer, retrying while the broker refuses, until
// ctx is done (then it returns nil) or the broker is closed (then it
// returns ErrClosed: retrying could never succeed). A refusal is logged at
// error once per cause (its text), then at debug while it repeats, as an
// operator expects of a dependency that stays down; Check reports the
// latest meanwhile, and a success after refusals is logged at info.
func (s *Subscriber) subscribe(ctx context.Context, deliver func(Delivery)) (Consumer, error) {
	cc := ConsumerConfig{Topic: s.topic, Subscription: s.name, AckWait: s.cfg.AckWait, Prefetch: s.cfg.Prefetch, Replay: s.replay, ReplaySince: s.since}
	retry := Backoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second}
	s.state.Store(&errSubscribing)
	var cause string // of the last refusal logged at error
	var since time.Time
	for attempt := 1; ; attempt++ {
		consumer, err := s.broker.Subscribe(ctx, cc, deliver)
		if err == nil {
			if attempt > 1 { // before Check passes, which may be waited for
				s.logger.Info("pubsub: subscribed after failing", "attempts", attempt, "failing_for", time.Since(since).Round(time.Millisecond))
			}
			s.state.Store(nil)
			return consumer, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		s.state.Store(&err)
		delay := retry.Delay(attempt)
		if attempt == 1 {
			since = time.Now()
		}
		level := slog.LevelDebug
		if err.Error() != cause {
			cause, level = err.Error(), slog.LevelError
		}
		s.logger.Log(ctx, level, "pubsub: failed to subscribe; retrying", "error", err, "attempt", attempt, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		}
	}
}

// handBack returns a prefetched message that no handler started to the
// broker, for immediate redelivery to another instance.
func (s *Subscriber) handBack(d Delivery) {
	if err := d.Nak(0); err != nil {
		s.metrics.ackErrors.WithLabelValues(s.topic, s.name).Inc()
	}
}
