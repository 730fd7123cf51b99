package interceptors

import (
	"time"

	"connectrpc.com/connect"
)

// The options of CircuitBreaker and Retry took the With prefix of every
// other option of this package (and of connect's). The old names stay,
// forwarding to the new ones, for the programs written against them.

// BreakerConsecutiveFailures is the old name of [WithBreakerConsecutiveFailures].
//
// Deprecated: Use [WithBreakerConsecutiveFailures].
func BreakerConsecutiveFailures(n int) BreakerOption { return WithBreakerConsecutiveFailures(n) }

// BreakerFailureRatio is the old name of [WithBreakerFailureRatio].
//
// Deprecated: Use [WithBreakerFailureRatio].
func BreakerFailureRatio(ratio float64, minCalls int) BreakerOption {
	return WithBreakerFailureRatio(ratio, minCalls)
}

// BreakerWindow is the old name of [WithBreakerWindow].
//
// Deprecated: Use [WithBreakerWindow].
func BreakerWindow(d time.Duration) BreakerOption { return WithBreakerWindow(d) }

// BreakerOpenTimeout is the old name of [WithBreakerOpenTimeout].
//
// Deprecated: Use [WithBreakerOpenTimeout].
func BreakerOpenTimeout(d time.Duration) BreakerOption { return WithBreakerOpenTimeout(d) }

// BreakerHalfOpenCalls is the old name of [WithBreakerHalfOpenCalls].
//
// Deprecated: Use [WithBreakerHalfOpenCalls].
func BreakerHalfOpenCalls(n int) BreakerOption { return WithBreakerHalfOpenCalls(n) }

// BreakerTripCodes is the old name of [WithBreakerTripCodes].
//
// Deprecated: Use [WithBreakerTripCodes].
func BreakerTripCodes(codes ...connect.Code) BreakerOption { return WithBreakerTripCodes(codes...) }

// RetryMaxAttempts is the old name of [WithRetryMaxAttempts].
//
// Deprecated: Use [WithRetryMaxAttempts].
func RetryMaxAttempts(n int) RetryOption { return WithRetryMaxAttempts(n) }

// RetryBackoff is the old name of [WithRetryBackoff].
//
// Deprecated: Use [WithRetryBackoff].
func RetryBackoff(initial, max time.Duration, multiplier float64) RetryOption {
	return WithRetryBackoff(initial, max, multiplier)
}

// RetryCodes is the old name of [WithRetryCodes].
//
// Deprecated: Use [WithRetryCodes].
func RetryCodes(codes ...connect.Code) RetryOption { return WithRetryCodes(codes...) }

// RetryBudget is the old name of [WithRetryBudget].
//
// Deprecated: Use [WithRetryBudget].
func RetryBudget(tokens int, ratio float64) RetryOption { return WithRetryBudget(tokens, ratio) }
