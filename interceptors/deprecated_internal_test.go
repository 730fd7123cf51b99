package interceptors

import (
	"reflect"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// TestDeprecatedOptionsForward checks that each old option name sets
// exactly what its With… replacement sets, with values that differ from
// field to field, so that a forwarder to the wrong option fails.
func TestDeprecatedOptionsForward(t *testing.T) {
	t.Parallel()
	breaker := func(opts ...BreakerOption) breakerConfig {
		var c breakerConfig
		for _, o := range opts {
			o.applyToBreaker(&c)
		}
		return c
	}
	oldB := breaker(BreakerConsecutiveFailures(7), BreakerFailureRatio(0.3, 11),
		BreakerWindow(3*time.Second), BreakerOpenTimeout(4*time.Second),
		BreakerHalfOpenCalls(2), BreakerTripCodes(connect.CodeAborted))
	newB := breaker(WithBreakerConsecutiveFailures(7), WithBreakerFailureRatio(0.3, 11),
		WithBreakerWindow(3*time.Second), WithBreakerOpenTimeout(4*time.Second),
		WithBreakerHalfOpenCalls(2), WithBreakerTripCodes(connect.CodeAborted))
	if !reflect.DeepEqual(oldB, newB) || reflect.DeepEqual(newB, breakerConfig{}) {
		t.Errorf("breaker options: old names give %+v, new names %+v", oldB, newB)
	}

	retry := func(opts ...RetryOption) retryConfig {
		var c retryConfig
		for _, o := range opts {
			o.applyToRetry(&c)
		}
		return c
	}
	oldR := retry(RetryMaxAttempts(4), RetryBackoff(time.Millisecond, time.Minute, 1.5),
		RetryCodes(connect.CodeResourceExhausted), RetryBudget(9, 0.25))
	newR := retry(WithRetryMaxAttempts(4), WithRetryBackoff(time.Millisecond, time.Minute, 1.5),
		WithRetryCodes(connect.CodeResourceExhausted), WithRetryBudget(9, 0.25))
	if !reflect.DeepEqual(oldR, newR) || reflect.DeepEqual(newR, retryConfig{}) {
		t.Errorf("retry options: old names give %+v, new names %+v", oldR, newR)
	}
}
