package pubsub

import (
	"context"
	"time"

	"github.com/connectkit/connectkit/internal/msgctx"
)

// InvokeForBench presents msg to s's handler chain as a delivery does,
// without a broker: it measures the cost of the unary presentation.
func (s *Subscriber) InvokeForBench(ctx context.Context, msg *Message) error {
	st := s.newState()
	st.info = msgctx.Info{
		Operation: msgctx.Process, System: "bench", Topic: s.topic, Subscription: s.name,
		MessageID: msg.ID, MessageType: s.typeName, Attempt: 1, MaxAttempts: s.cfg.MaxAttempts,
	}
	return s.invoke(ctx, st, msg, ContentTypeProto, s.cfg.AckWait)
}

// RetryDelay is the delay before the redelivery that follows failed attempt
// number attempt, as s schedules it: with s's configuration as NewSubscriber
// completed it.
func (s *Subscriber) RetryDelay(attempt int) time.Duration {
	return s.cfg.Backoff.Delay(attempt)
}

// SetValidatorBuildWarning sets how long NewPublisher waits for
// protovalidate's validator to be built before it logs what may hold it
// for good (validatorBuildWarning), for the process.
func SetValidatorBuildWarning(d time.Duration) { validatorBuildWarning = d }
