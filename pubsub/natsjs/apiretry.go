package natsjs

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// setupAttemptTimeout is how long one JetStream API request of a
// stream's setup (its lookup, creation or update) waits for its answer
// before it is made again, within its caller's deadline.
const setupAttemptTimeout = 2 * time.Second

// retryLost runs req, a JetStream API request, giving each attempt at most
// setupAttemptTimeout of ctx, and makes it again while an attempt got no
// answer in time and ctx has time left. nats-server answers no request
// about a stream whose leader is being elected (a cluster that lost the
// stream's leader): waited for whole, such a lookup held every publish of
// the topic for NATS_PUBLISH_TIMEOUT (30s) where the election took 5s
// (README, Running against a NATS cluster). nats.go's requests are not
// retried, hence this loop. The requests it makes again are
// idempotent: a lookup, an update to the same config, and a creation,
// whose repeat finds the stream made (upsertStream looks it up then).
//
// Without a deadline, ctx is given DefaultPublishTimeout: nats.go would
// give up on one attempt after 5s, and this must give up too.
func retryLost[T any](ctx context.Context, req func(context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPublishTimeout)
		defer cancel()
	}
	for {
		attempt, cancel := context.WithTimeout(ctx, setupAttemptTimeout)
		v, err := req(attempt)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return v, err
		}
	}
}

// lookupStream looks the stream named name up, with retryLost: a
// stream's lookup goes unanswered for as long as the stream has no
// leader, just after its creation too.
func (b *Broker) lookupStream(ctx context.Context, name string) (jetstream.Stream, error) {
	return retryLost(ctx, func(ctx context.Context) (jetstream.Stream, error) { return b.js.Stream(ctx, name) })
}
