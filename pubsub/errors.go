package pubsub

import (
	"errors"

	"github.com/connectkit/connectkit/internal/notsent"
)

// ErrClosed is returned by a broker that was closed.
var ErrClosed = errors.New("pubsub: broker closed")

// ErrNotSent is wrapped by the error of a publish that the broker gave up
// before sending the message: it did not store it and will not, so
// publishing it again makes no duplicate. natsjs returns it for a publish
// whose topic's stream it could not look up or create within
// NATS_PUBLISH_TIMEOUT (before its first connection to NATS, say). A publish that
// fails without it may have been sent, and may be stored all the same (no
// acknowledgement in time).
//
// It is the same value as
// [github.com/connectkit/connectkit/interceptors.ErrNotSent], which an RPC
// that never left its client wraps: errors.Is(err, ErrNotSent) tells a
// publish or a call that was certainly not sent, whichever name it uses.
var ErrNotSent = notsent.Err

// Permanent marks err as one that no retry can fix: a handler that returns
// Permanent(err) has its message dead-lettered at once, with reason
// [ReasonPermanent], instead of retried. Permanent(nil) is nil.
//
// Errors with Connect codes InvalidArgument, FailedPrecondition, OutOfRange
// and Unimplemented are permanent without the mark.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by
// [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// ErrBadRef is returned (wrapped) by a [DeadLetterPager] given a ref that is
// not one of its broker's.
var ErrBadRef = errors.New("pubsub: not a dead letter ref of this broker")
