package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
)

// jsErrConsumerCreate is the JetStream error code of a consumer that the
// server would not create or update, with its reason as text ("ack policy
// can not be updated"); nats.go has no sentinel for it.
const jsErrConsumerCreate jetstream.ErrorCode = 10012

// foreignConsumer returns the error of a subscription whose consumer,
// made outside pubsub under its name (by an operator, another library),
// has settings that nats-server cannot update to want's (err, its refusal,
// says only "ack policy can not be updated"): FailedPrecondition, which no
// retry mends, naming them and the mend. It returns nil when err is no
// such refusal (a timeout, a limit: looking the consumer up would cost
// every retry one or two requests more, each waiting as long again when
// the server does not answer), or the consumer cannot be looked up or
// differs in none of them.
func (c *consumer) foreignConsumer(ctx context.Context, stream string, want jetstream.ConsumerConfig, err error) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrConsumerCreate {
		return nil
	}
	var diffs []string
	var have jetstream.ConsumerConfig
	cons, lerr := c.b.js.Consumer(ctx, stream, c.name)
	switch {
	case lerr == nil:
		have = cons.CachedInfo().Config
	case errors.Is(lerr, jetstream.ErrNotPullConsumer):
		pc, perr := c.b.js.PushConsumer(ctx, stream, c.name) // nats.go looks a push consumer up apart
		if perr != nil {
			return nil
		}
		have = pc.CachedInfo().Config
		diffs = append(diffs, "push delivery (to "+have.DeliverSubject+")")
	default:
		return nil
	}
	if have.AckPolicy != want.AckPolicy {
		diffs = append(diffs, "ack policy "+have.AckPolicy.String())
	}
	if have.DeliverPolicy != want.DeliverPolicy {
		diffs = append(diffs, "deliver policy "+have.DeliverPolicy.String())
	}
	if len(diffs) == 0 {
		return nil
	}
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
		"natsjs: consumer %s of stream %s, made outside pubsub, has %s, which pubsub cannot change to its own (pull, explicit acks): delete it once drained (nats consumer rm %s %s), or name the subscription otherwise: %w",
		c.name, stream, strings.Join(diffs, ", "), stream, c.name, err))
}
