package pubsub_test

import (
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/pubsub"
)

// TestErrNotSentIsOneValue: a publish that never left the process and an
// RPC that never left its client say so with one value under two names,
// so that a caller tests either with either name: errors.Is(err,
// interceptors.ErrNotSent) around a publish, or pubsub.ErrNotSent around
// an RPC, said false, the two names holding two values of one meaning.
func TestErrNotSentIsOneValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"publish", connect.NewError(connect.CodeUnavailable, fmt.Errorf("pubsub: message %w: natsjs: publish to t failed", pubsub.ErrNotSent))},
		{"rpc", connect.NewError(connect.CodeUnavailable, fmt.Errorf("no healthy connections to h: %w", interceptors.ErrNotSent))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !errors.Is(tc.err, pubsub.ErrNotSent) || !errors.Is(tc.err, interceptors.ErrNotSent) {
				t.Errorf("%v: errors.Is pubsub.ErrNotSent %v, interceptors.ErrNotSent %v; want both", tc.err,
					errors.Is(tc.err, pubsub.ErrNotSent), errors.Is(tc.err, interceptors.ErrNotSent))
			}
		})
	}
}
