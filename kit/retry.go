package kit

import (
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
)

// ClientRetryConfig configures the retries of the clients built with
// [Server.ClientOptions] ([interceptors.Retry]). Unary calls of idempotent
// methods (option idempotency_level in the proto) that fail with one of
// Codes, and calls of any method whose connection was refused, are made
// again after a backoff, while the peer's retry budget lasts. Every zero
// field takes the default its comment states.
//
// It is off by default, as gRPC's clients retry only with a retry policy in
// their service config: retries add load to a server that is already
// failing, and a service should choose them for the services it calls
// (kit's own servers answer Unavailable when they shed load,
// KIT_MAX_INFLIGHT, and at shutdown).
type ClientRetryConfig struct {
	// Enabled puts the retries in the client chain. KIT_CLIENT_RETRY
	// ("on" or "off", or true or false), default off.
	Enabled bool
	// MaxAttempts is the most attempts a call makes, the first included
	// (1 to 5). KIT_CLIENT_RETRY_MAX_ATTEMPTS, default 3.
	MaxAttempts int
	// InitialBackoff is the most the wait before the first retry may be;
	// it doubles with each retry (full jitter: each wait is drawn between 0
	// and it). KIT_CLIENT_RETRY_INITIAL_BACKOFF, default 100ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the doubling of InitialBackoff.
	// KIT_CLIENT_RETRY_MAX_BACKOFF, default 1s.
	MaxBackoff time.Duration
	// Codes are the codes that an idempotent call is retried on.
	// KIT_CLIENT_RETRY_CODES, comma-separated Connect code names
	// ("unavailable,resource_exhausted"), default unavailable.
	Codes []connect.Code
	// BudgetTokens is the size of each peer's retry budget: retries stop
	// while half of it or less is left, each failed attempt taking a token.
	// KIT_CLIENT_RETRY_BUDGET_TOKENS, default 10.
	BudgetTokens int
	// BudgetRatio is the share of a token that each successful call gives
	// back to its peer's budget (0.001 to 1: budgets count in thousandths
	// of a token).
	// KIT_CLIENT_RETRY_BUDGET_RATIO, default 0.1.
	BudgetRatio float64
}

// clientRetrySettings are the KIT_CLIENT_RETRY* variables.
var clientRetrySettings = []setting{
	switchOf("KIT_CLIENT_RETRY", "retries of idempotent calls on the clients of ClientOptions",
		func(c *Config) *bool { return &c.ClientRetry.Enabled }),
	breakerInt("KIT_CLIENT_RETRY_MAX_ATTEMPTS", "attempts of a client call, the first included",
		interceptors.DefaultRetryMaxAttempts, func(c *Config) *int { return &c.ClientRetry.MaxAttempts }),
	breakerDuration("KIT_CLIENT_RETRY_INITIAL_BACKOFF", "longest wait before a client call's first retry",
		interceptors.DefaultRetryInitialBackoff, func(c *Config) *time.Duration { return &c.ClientRetry.InitialBackoff }),
	breakerDuration("KIT_CLIENT_RETRY_MAX_BACKOFF", "longest wait between a client call's attempts",
		interceptors.DefaultRetryMaxBackoff, func(c *Config) *time.Duration { return &c.ClientRetry.MaxBackoff }),
	{env: "KIT_CLIENT_RETRY_CODES", usage: "comma-separated codes an idempotent client call is retried on",
		set: func(c *Config, v string) error {
			var codes []connect.Code
			for _, name := range strings.Split(v, ",") {
				var code connect.Code
				if err := code.UnmarshalText([]byte(strings.ToLower(strings.TrimSpace(name)))); err != nil {
					return fmt.Errorf(`want Connect code names such as "unavailable,resource_exhausted": %q is none`, strings.TrimSpace(name))
				}
				codes = append(codes, code)
			}
			c.ClientRetry.Codes = codes
			return nil
		},
		get: func(c *Config) any {
			codes := c.ClientRetry.Codes
			if len(codes) == 0 {
				codes = []connect.Code{connect.CodeUnavailable}
			}
			names := make([]string, len(codes))
			for i, code := range codes {
				names[i] = code.String()
			}
			return strings.Join(names, ",")
		}},
	breakerInt("KIT_CLIENT_RETRY_BUDGET_TOKENS", "tokens of a peer's retry budget",
		interceptors.DefaultRetryBudgetTokens, func(c *Config) *int { return &c.ClientRetry.BudgetTokens }),
	ratioOf("KIT_CLIENT_RETRY_BUDGET_RATIO", "share of a token a successful client call gives back to its peer's retry budget",
		interceptors.DefaultRetryBudgetRatio, func(c *Config) *float64 { return &c.ClientRetry.BudgetRatio }),
}

// check reports, with bad, each setting of r out of range, and each one set
// while retries are off, which would change nothing.
func (r ClientRetryConfig) check(bad func(field, env string, value any, why string)) {
	initial := orDefault(r.InitialBackoff, interceptors.DefaultRetryInitialBackoff)
	checkSwitched(r.Enabled, "ClientRetry.", "needs KIT_CLIENT_RETRY=on (retries are off without it)", bad, []switchedSetting{
		{"MaxAttempts", "KIT_CLIENT_RETRY_MAX_ATTEMPTS", r.MaxAttempts, r.MaxAttempts != 0, r.MaxAttempts > 0 && r.MaxAttempts <= interceptors.MaxRetryAttempts,
			fmt.Sprintf("must be between 1 and %d", interceptors.MaxRetryAttempts)},
		{"InitialBackoff", "KIT_CLIENT_RETRY_INITIAL_BACKOFF", r.InitialBackoff, r.InitialBackoff != 0, r.InitialBackoff > 0, "must be positive"},
		{"MaxBackoff", "KIT_CLIENT_RETRY_MAX_BACKOFF", r.MaxBackoff, r.MaxBackoff != 0, r.MaxBackoff >= initial,
			fmt.Sprintf("must be positive and at least KIT_CLIENT_RETRY_INITIAL_BACKOFF (%s)", initial)},
		{"Codes", "KIT_CLIENT_RETRY_CODES", r.Codes, len(r.Codes) != 0, validCodes(r.Codes), "must be Connect codes (1 to 16)"},
		{"BudgetTokens", "KIT_CLIENT_RETRY_BUDGET_TOKENS", r.BudgetTokens, r.BudgetTokens != 0, r.BudgetTokens > 0 && r.BudgetTokens <= maxBreakerCount, countRange},
		{"BudgetRatio", "KIT_CLIENT_RETRY_BUDGET_RATIO", r.BudgetRatio, r.BudgetRatio != 0, r.BudgetRatio >= interceptors.MinRetryBudgetRatio && r.BudgetRatio <= 1,
			fmt.Sprintf("must be between %g and 1", interceptors.MinRetryBudgetRatio)},
	})
}

func validCodes(codes []connect.Code) bool {
	for _, c := range codes {
		if c < connect.CodeCanceled || c > connect.CodeUnauthenticated {
			return false
		}
	}
	return true
}

// clientRetry returns the retry interceptor of the client chain, or nil
// when it is off.
func (s *Server) clientRetry() (connect.Interceptor, error) {
	r := s.cfg.ClientRetry
	if !r.Enabled {
		return nil, nil
	}
	retry, err := interceptors.Retry(s.logger, s.registry,
		interceptors.WithRetryMaxAttempts(r.MaxAttempts),
		interceptors.WithRetryBackoff(r.InitialBackoff, r.MaxBackoff, 0),
		interceptors.WithRetryCodes(r.Codes...),
		interceptors.WithRetryBudget(r.BudgetTokens, r.BudgetRatio),
	)
	if err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	return retry, nil
}
