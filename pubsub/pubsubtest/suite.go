// Package pubsubtest is the conformance suite of [pubsub.Broker]
// implementations: one set of tests, run by every driver's own tests through
// [Run], in the manner of Watermill's pubsub/tests. [Bench] is the drivers'
// shared benchmark, through the interceptor chain of a real kit.Server.
//
// [Start] and [WaitFor] serve an application's tests of its own subscribers
// too, on the in-memory broker of package mem: Start runs a subscriber until
// the test ends, WaitFor waits for what its handler does.
package pubsubtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
)

// Features describes the broker under test.
type Features struct {
	// System is what the broker's System method returns.
	System string
}

// Backend is one test's broker backend: a fresh one per test.
type Backend struct {
	// Connect returns a broker connected to the backend as a new process
	// would be: for a networked broker, a new connection; for an in-process
	// one, the broker itself. The backend closes it when the test ends.
	// A broker with a Close method may also be closed by the suite first:
	// Close must be idempotent, and a closed broker must refuse every
	// operation with pubsub.ErrClosed.
	Connect func(tb testing.TB) pubsub.Broker
}

// Run runs the conformance suite against the brokers of newBackend, which is
// called once per test. Every test runs in parallel.
func Run(t *testing.T, features Features, newBackend func(tb testing.TB) Backend) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"JSON", testJSON},
		{"PublishBatch", testPublishBatch},
		{"WaitAgain", testWaitAgain},
		{"ValidationOnPublish", testValidationOnPublish},
		{"TypeMismatchDeadLetters", testTypeMismatch},
		{"UndecodableDeadLetters", testUndecodable},
		{"RetryWithBackoff", testRetryWithBackoff},
		{"PanicIsRetried", testPanicIsRetried},
		{"MaxAttemptsDeadLetters", testMaxAttempts},
		{"PermanentDeadLettersAtOnce", testPermanent},
		{"NewSchemaToOldHandler", testNewSchemaToOldHandler},
		{"OldSchemaToNewHandler", testOldSchemaToNewHandler},
		{"MovedTypeDeadLetters", testMovedType},
		{"StricterRulesDeadLetter", testStricterRules},
		{"Redrive", testRedrive},
		{"ForgedOriginalTime", testForgedOriginalTime},
		{"RedriveAll", testRedriveAll},
		{"DeadLetterPages", testDeadLetterPages},
		{"SharedSubscription", testSharedSubscription},
		{"ReplayEveryInstance", testReplayEveryInstance},
		{"ReplayAfterRestart", testReplayAfterRestart},
		{"ReplaySince", testReplaySince},
		{"ReplayFailures", testReplayFailures},
		{"ReplayNoRedrive", testReplayNoRedrive},
		{"WaitedGetsFullAckWait", testWaitedGetsFullAckWait},
		{"OverdueCopiesNotHandled", testOverdueCopiesNotHandled},
		{"PrefetchBelowConcurrency", testPrefetchBelowConcurrency},
		{"OverrunNotRunTwice", testOverrunNotRunTwice},
		{"OverrunRetried", testOverrunRetried},
		{"CrashRedelivers", testCrashRedelivers},
		{"CleanShutdownRedeliversNothing", testCleanShutdown},
		{"RandomFailuresAndRestart", testRandomFailuresAndRestart},
		{"CancelWhileFlowing", testCancelWhileFlowing},
		{"Deduplication", testDeduplication},
		{"TraceContinuity", testTraceContinuity},
		{"OneChainForRPCAndMessages", testOneChain},
		{"Check", testCheck},
		{"Backlog", testBacklog},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			backend := newBackend(t)
			tc.run(t, &harness{features: features, backend: backend, broker: backend.Connect(t)})
		})
	}
}

// waitTimeout is how long a test waits for a condition: generous, since a
// loaded machine is slow, and never reached when the broker is correct.
const waitTimeout = 2 * time.Minute

type harness struct {
	features Features
	backend  Backend
	broker   pubsub.Broker
}

// testDelivery is the delivery configuration of the suite: fast retries.
func testDelivery() pubsub.DeliveryConfig {
	return pubsub.DeliveryConfig{
		Concurrency: 4,
		AckWait:     30 * time.Second,
		Backoff:     pubsub.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
	}
}

func (h *harness) publisher(tb testing.TB, b pubsub.Broker, topic string, opts ...pubsub.Option) *pubsub.Publisher[pingv1.PingRequest] {
	tb.Helper()
	p, err := pubsub.NewPublisher[pingv1.PingRequest](b, topic, opts...)
	if err != nil {
		tb.Fatalf("NewPublisher: %v", err)
	}
	return p
}

// Start runs sub until the test ends (or stop is called) and waits until it
// consumes. stop cancels Run and waits for it to return nil.
func Start(tb testing.TB, sub *pubsub.Subscriber) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Subscriber.Run = %v, want nil", err)
				}
			case <-time.After(waitTimeout):
				tb.Errorf("Subscriber.Run did not return %v after its context was cancelled", waitTimeout)
			}
		})
	}
	tb.Cleanup(stop)
	WaitFor(tb, "the subscriber to consume", func() bool { return sub.Check(context.Background()) == nil })
	return stop
}

// WaitFor polls cond until it holds, failing the test after a generous
// timeout (2 minutes) that names what it waited for.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// deadLetters lists the dead letters of topic and subscription.
func deadLetters(tb testing.TB, b pubsub.Broker, topic, subscription string) []*pubsub.DeadLetter {
	tb.Helper()
	var out []*pubsub.DeadLetter
	for dl, err := range b.DeadLetters(context.Background(), topic, subscription) {
		if err != nil {
			tb.Fatalf("DeadLetters: %v", err)
		}
		out = append(out, dl)
	}
	return out
}

// waitDeadLetters waits until topic and subscription have n dead letters and
// returns them.
func waitDeadLetters(tb testing.TB, b pubsub.Broker, topic, subscription string, n int) []*pubsub.DeadLetter {
	tb.Helper()
	var dls []*pubsub.DeadLetter
	WaitFor(tb, fmt.Sprintf("%d dead letters", n), func() bool {
		dls = deadLetters(tb, b, topic, subscription)
		return len(dls) >= n
	})
	if len(dls) != n {
		tb.Fatalf("got %d dead letters, want %d", len(dls), n)
	}
	return dls
}

// recorder records what a handler saw, by message id.
type recorder struct {
	mu    sync.Mutex
	calls map[string][]call
	order []string // ids, in the order of first success
}

type call struct {
	msg  *pingv1.PingRequest
	info pubsub.MessageInfo
	err  error
	at   time.Time
	end  time.Time
}

func newRecorder() *recorder { return &recorder{calls: make(map[string][]call)} }

// handler returns a handler that records each call and returns what fail
// returns for it (nil: success).
func (r *recorder) handler(fail func(*pingv1.PingRequest, pubsub.MessageInfo) error) func(context.Context, *pingv1.PingRequest) error {
	return func(ctx context.Context, msg *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		c := call{msg: msg, info: info, at: time.Now()}
		if fail != nil {
			c.err = fail(msg, info)
		}
		c.end = time.Now()
		r.mu.Lock()
		defer r.mu.Unlock()
		if c.err == nil && !r.succeededLocked(info.ID) {
			r.order = append(r.order, info.ID)
		}
		r.calls[info.ID] = append(r.calls[info.ID], c)
		return c.err
	}
}

func (r *recorder) succeededLocked(id string) bool {
	for _, c := range r.calls[id] {
		if c.err == nil {
			return true
		}
	}
	return false
}

// handled reports whether the message with id was handled successfully,
// once or more: a test that waits for a message waits with it, since a
// broker may deliver a message again (a machine that stalls its process
// longer than AckWait) and a count that passes 1 between two polls never
// comes back to it.
func (r *recorder) handled(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.succeededLocked(id)
}

// succeeded returns how many distinct messages were handled successfully.
func (r *recorder) succeeded() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

func (r *recorder) callsOf(id string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls[id]...)
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// newSubscriber is pubsub.NewSubscriber that fails the test on error.
func newSubscriber[M any](tb testing.TB, b pubsub.Broker, topic, subscription string, handle func(context.Context, *M) error, opts ...pubsub.Option) *pubsub.Subscriber {
	tb.Helper()
	sub, err := pubsub.NewSubscriber(b, topic, subscription, handle, opts...)
	if err != nil {
		tb.Fatalf("NewSubscriber: %v", err)
	}
	return sub
}
