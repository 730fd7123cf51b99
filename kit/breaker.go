package kit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
)

// ClientBreakerConfig configures the circuit breaker of the clients built
// with [Server.ClientOptions] ([interceptors.CircuitBreaker]). It keeps one
// breaker per address and procedure called, which fails calls at once with
// Unavailable while the server behind them keeps failing. Every zero field
// takes the default its comment states.
//
// It is off by default: a breaker changes what callers see (a refusal in
// place of the server's own error, and calls refused that might have
// succeeded while it is open), which a service should choose for the
// services it calls. The publishes of pubsub publishers built with those
// options are never refused (see [interceptors.CircuitBreaker]).
type ClientBreakerConfig struct {
	// Enabled puts the breaker in the client chain. KIT_CLIENT_BREAKER
	// ("on" or "off", or true or false), default off.
	Enabled bool
	// ConsecutiveFailures trips a breaker after this many failed calls in a
	// row within Window. KIT_CLIENT_BREAKER_FAILURES, default 5.
	ConsecutiveFailures int
	// FailureRatio trips a breaker when at least this share (0 to 1) of
	// the calls within Window failed, once there are MinCalls of them.
	// KIT_CLIENT_BREAKER_FAILURE_RATIO, default 0.5.
	FailureRatio float64
	// MinCalls is the number of calls within Window that FailureRatio
	// needs. KIT_CLIENT_BREAKER_MIN_CALLS, default 20.
	MinCalls int
	// Window is how long a closed breaker remembers calls (it rolls by
	// tenths). KIT_CLIENT_BREAKER_WINDOW, default 10s.
	Window time.Duration
	// OpenTimeout is how long a tripped breaker refuses every call before
	// it lets probes through. KIT_CLIENT_BREAKER_OPEN_TIMEOUT, default 10s.
	OpenTimeout time.Duration
	// Probes is the number of calls a half-open breaker lets through, all
	// of which must succeed to close it
	// (interceptors.WithBreakerHalfOpenCalls). KIT_CLIENT_BREAKER_PROBES,
	// default 1.
	Probes int
}

// clientBreakerSettings are the KIT_CLIENT_BREAKER* variables.
var clientBreakerSettings = []setting{
	switchOf("KIT_CLIENT_BREAKER", "circuit breaker on the clients of ClientOptions",
		func(c *Config) *bool { return &c.ClientBreaker.Enabled }),
	breakerInt("KIT_CLIENT_BREAKER_FAILURES", "failed calls in a row that trip a client breaker",
		interceptors.DefaultBreakerConsecutiveFailures, func(c *Config) *int { return &c.ClientBreaker.ConsecutiveFailures }),
	ratioOf("KIT_CLIENT_BREAKER_FAILURE_RATIO", "share of failed calls (0 to 1) that trips a client breaker",
		interceptors.DefaultBreakerFailureRatio, func(c *Config) *float64 { return &c.ClientBreaker.FailureRatio }),
	breakerInt("KIT_CLIENT_BREAKER_MIN_CALLS", "calls a client breaker's failure ratio needs",
		interceptors.DefaultBreakerMinCalls, func(c *Config) *int { return &c.ClientBreaker.MinCalls }),
	breakerDuration("KIT_CLIENT_BREAKER_WINDOW", "how long a client breaker remembers calls",
		interceptors.DefaultBreakerWindow, func(c *Config) *time.Duration { return &c.ClientBreaker.Window }),
	breakerDuration("KIT_CLIENT_BREAKER_OPEN_TIMEOUT", "how long a tripped client breaker refuses calls",
		interceptors.DefaultBreakerOpenTimeout, func(c *Config) *time.Duration { return &c.ClientBreaker.OpenTimeout }),
	breakerInt("KIT_CLIENT_BREAKER_PROBES", "probe calls of a half-open client breaker",
		interceptors.DefaultBreakerHalfOpenCalls, func(c *Config) *int { return &c.ClientBreaker.Probes }),
}

// switchOf is a setting that turns a feature "on" or "off" (or true or
// false, 1 or 0). Its flag takes the value as its variable does
// (-client-retry on): a boolean flag, which takes none, read
// "-client-retry off" as on, and "off" as the first argument, which ends
// the flags, so that those after it were dropped.
func switchOf(env, usage string, ptr func(*Config) *bool) setting {
	return setting{env: env, usage: usage + `: "on" or "off"`,
		set: func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "on", "true", "1":
				*ptr(c) = true
			case "off", "false", "0":
				*ptr(c) = false
			default:
				return errors.New(`want "on" or "off"`)
			}
			return nil
		},
		// -help shows the value the flag takes, "(default on)", not a
		// boolean's "true" (and "off" too, which a flag shows while
		// false is its zero).
		get: func(c *Config) any {
			if *ptr(c) {
				return "on"
			}
			return "off"
		}}
}

func breakerInt(env, usage string, def int, ptr func(*Config) *int) setting {
	return setting{env: env, usage: usage,
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return errors.New("want an integer")
			}
			*ptr(c) = n
			return nil
		},
		get: func(c *Config) any { return orDefault(*ptr(c), def) }}
}

// ratioOf is a setting of a share, from 0 to 1, whose default is def.
func ratioOf(env, usage string, def float64, ptr func(*Config) *float64) setting {
	return setting{env: env, usage: usage,
		set: func(c *Config, v string) error {
			r, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("want a number such as %q", strconv.FormatFloat(def, 'g', -1, 64))
			}
			*ptr(c) = r
			return nil
		},
		get: func(c *Config) any { return orDefault(*ptr(c), def) }}
}

// breakerDuration is durationOf whose -help shows def for a zero field,
// the default the field stands for (the breaker's, the HTTP client's).
func breakerDuration(env, usage string, def time.Duration, ptr func(*Config) *time.Duration) setting {
	s := durationOf(env, usage, ptr)
	s.get = func(c *Config) any { return orDefault(*ptr(c), def) }
	return s
}

func orDefault[T comparable](v, def T) T {
	setDefault(&v, def)
	return v
}

// maxBreakerCount bounds KIT_CLIENT_BREAKER_FAILURES and _MIN_CALLS.
const maxBreakerCount = 1_000_000

var countRange = fmt.Sprintf("must be between 1 and %d", maxBreakerCount)

// check reports, with bad, each setting of b out of range, and each one set
// while the breaker is off, which would change nothing.
func (b ClientBreakerConfig) check(bad func(field, env string, value any, why string)) {
	checkSwitched(b.Enabled, "ClientBreaker.", "needs KIT_CLIENT_BREAKER=on (the breaker is off without it)", bad, []switchedSetting{
		{"ConsecutiveFailures", "KIT_CLIENT_BREAKER_FAILURES", b.ConsecutiveFailures, b.ConsecutiveFailures != 0, b.ConsecutiveFailures > 0 && b.ConsecutiveFailures <= maxBreakerCount, countRange},
		{"FailureRatio", "KIT_CLIENT_BREAKER_FAILURE_RATIO", b.FailureRatio, b.FailureRatio != 0, b.FailureRatio > 0 && b.FailureRatio <= 1, "must be above 0 and at most 1"},
		{"MinCalls", "KIT_CLIENT_BREAKER_MIN_CALLS", b.MinCalls, b.MinCalls != 0, b.MinCalls > 0 && b.MinCalls <= maxBreakerCount, countRange},
		{"Window", "KIT_CLIENT_BREAKER_WINDOW", b.Window, b.Window != 0, b.Window > 0, "must be positive"},
		{"OpenTimeout", "KIT_CLIENT_BREAKER_OPEN_TIMEOUT", b.OpenTimeout, b.OpenTimeout != 0, b.OpenTimeout > 0, "must be positive"},
		{"Probes", "KIT_CLIENT_BREAKER_PROBES", b.Probes, b.Probes != 0, b.Probes > 0 && b.Probes <= 1000, "must be between 1 and 1000"},
	})
}

// switchedSetting is a setting of a feature that a switch turns on: its
// field and variable, its value, whether it is set, whether its value is
// in range and, if not, why.
type switchedSetting struct {
	field, env string
	value      any
	set, ok    bool
	why        string
}

// checkSwitched reports, with bad, each setting set while its feature is
// off (needs says which switch it needs), and each one out of range.
func checkSwitched(on bool, prefix, needs string, bad func(field, env string, value any, why string), settings []switchedSetting) {
	for _, f := range settings {
		switch {
		case !f.set:
		case !on:
			bad(prefix+f.field, f.env, f.value, needs)
		case !f.ok:
			bad(prefix+f.field, f.env, f.value, f.why)
		}
	}
}

// clientBreaker returns the circuit breaker of the client chain, or nil
// when it is off.
func (s *Server) clientBreaker() (connect.Interceptor, error) {
	b := s.cfg.ClientBreaker
	if !b.Enabled {
		return nil, nil
	}
	breaker, err := interceptors.CircuitBreaker(s.logger, s.registry,
		interceptors.WithBreakerConsecutiveFailures(b.ConsecutiveFailures),
		interceptors.WithBreakerFailureRatio(b.FailureRatio, b.MinCalls),
		interceptors.WithBreakerWindow(b.Window),
		interceptors.WithBreakerOpenTimeout(b.OpenTimeout),
		interceptors.WithBreakerHalfOpenCalls(b.Probes),
	)
	if err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	return breaker, nil
}
