package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
//
// A request the connection's user may not make is not made again:
// nats-server drops it too, but says so (a permissions violation, which
// nats.go hands to the connection's error handler, not to the request),
// and retryLost returns the attempt's error with that violation once the
// attempt is out. subject is req's, to tell its violation from another's.
func retryLost[T any](ctx context.Context, b *Broker, subject string, req func(context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPublishTimeout)
		defer cancel()
	}
	for {
		denied := b.denied.Load()
		attempt, cancel := context.WithTimeout(ctx, setupAttemptTimeout)
		v, err := req(attempt)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			return v, err
		}
		if d := b.denied.Load(); d != denied && strings.Contains((*d).Error(), strconv.Quote(subject)) {
			return v, fmt.Errorf("%w (%w)", err, *d)
		}
		if ctx.Err() != nil {
			return v, err
		}
	}
}

// jsAPI is the subject of the JetStream API request op (STREAM.INFO, say)
// on the stream named name, as nats.go's jetstream sends it.
func jsAPI(op, name string) string { return jetstream.DefaultAPIPrefix + op + "." + name }

// lookupStream looks the stream named name up, with retryLost: a
// stream's lookup goes unanswered for as long as the stream has no
// leader, just after its creation too.
func (b *Broker) lookupStream(ctx context.Context, name string) (jetstream.Stream, error) {
	return retryLost(ctx, b, jsAPI("STREAM.INFO", name), func(ctx context.Context) (jetstream.Stream, error) { return b.js.Stream(ctx, name) })
}
