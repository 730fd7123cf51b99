package interceptors

import (
	"time"

	"connectrpc.com/connect"
)

// The options of CircuitBreaker and Retry took the With prefix of every
// other option of this package (and of connect's). The old names stay,
// forwarding to the new ones, for the programs written against them; their
// //go:fix inline directives let go fix rewrite those programs' calls.

// BreakerConsecutiveFailures is the old name of [WithBreakerConsecutiveFailures].
//
// Deprecated: Use [WithBreakerConsecutiveFailures].
//
//go:fix inline
func BreakerConsecutiveFailures(n int) BreakerOption { return WithBreakerConsecutiveFailures(n) }

// BreakerFailureRatio is the old name of [WithBreakerFailureRatio].
//
// Deprecated: Use [WithBreakerFailureRatio].
//
//go:fix inline
func BreakerFailureRatio(ratio float64, minCalls int) BreakerOption {
	return WithBreakerFailureRatio(ratio, minCalls)
}

// BreakerWindow is the old name of [WithBreakerWindow].
//
// Deprecated: Use [WithBreakerWindow].
//
//go:fix inline
func BreakerWindow(d time.Duration) BreakerOption { return WithBreakerWindow(d) }

// BreakerOpenTimeout is the old name of [WithBreakerOpenTimeout].
//
// Deprecated: Use [WithBreakerOpenTimeout].
//
//go:fix inline
func BreakerOpenTimeout(d time.Duration) BreakerOption { return WithBreakerOpenTimeout(d) }

// BreakerHalfOpenCalls is the old name of [WithBreakerHalfOpenCalls].
//
// Deprecated: Use [WithBreakerHalfOpenCalls].
//
//go:fix inline
func BreakerHalfOpenCalls(n int) BreakerOption { return WithBreakerHalfOpenCalls(n) }

// BreakerTripCodes is the old name of [WithBreakerTripCodes].
//
// Deprecated: Use [WithBreakerTripCodes].
//
//go:fix inline
func BreakerTripCodes(codes ...connect.Code) BreakerOption { return WithBreakerTripCodes(codes...) }

// RetryMaxAttempts is the old name of [WithRetryMaxAttempts].
//
// Deprecated: Use [WithRetryMaxAttempts].
//
//go:fix inline
func RetryMaxAttempts(n int) RetryOption { return WithRetryMaxAttempts(n) }

// RetryBackoff is the old name of [WithRetryBackoff].
//
// Deprecated: Use [WithRetryBackoff].
//
//go:fix inline
func RetryBackoff(initial, max time.Duration, multiplier float64) RetryOption {
	return WithRetryBackoff(initial, max, multiplier)
}

// RetryCodes is the old name of [WithRetryCodes].
//
// Deprecated: Use [WithRetryCodes].
//
//go:fix inline
func RetryCodes(codes ...connect.Code) RetryOption { return WithRetryCodes(codes...) }

// RetryBudget is the old name of [WithRetryBudget].
//
// Deprecated: Use [WithRetryBudget].
//
//go:fix inline
func RetryBudget(tokens int, ratio float64) RetryOption { return WithRetryBudget(tokens, ratio) }
