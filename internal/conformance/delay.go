package conformance

import (
	"context"
	"errors"
	"time"
)

// sleep waits for the response delay d of a stream, and stops early when
// the call ends: the client cancels or the deadline passes.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return contextError(ctx.Err())
	}
}

// sleepUnary waits for the response delay d of a single-response call
// (unary or client stream). Like sleep, it stops early when the client goes
// away; unlike sleep, not when the call's own deadline passes, because that
// answer would race the client's own deadline: the timeout header is rounded
// down to the millisecond, so the server's deadline often comes first, and
// the suite's reference client flags the error body it cuts short when its
// deadline strikes mid-read ("connect error JSON: unexpected end of JSON
// input", about one run in four). Streams keep the prompt answer: their
// reference client holds a full-duplex stream open until the server ends it.
func sleepUnary(ctx context.Context, d time.Duration) error {
	start := time.Now()
	err := sleep(ctx, d)
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	req, _ := ctx.Value(httpRequestKey{}).(httpRequest)
	rest := time.NewTimer(d - time.Since(start))
	defer rest.Stop()
	select {
	case <-rest.C:
		return nil
	case <-req.done:
		return err
	}
}
