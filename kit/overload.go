package kit

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	"github.com/connectkit/connectkit/interceptors"
)

// WithLimitOptions configures the rate limit and the bound on calls in
// flight that [Config.RateLimit] and [Config.MaxInFlight] turn on.
// interceptors.WithExemptProcedures("/acme.v1.Exports/") exempts procedures
// of yours from both (the gRPC health service, reflection and pubsub
// deliveries always are), and interceptors.WithLimitPerProcedure() gives each
// procedure a rate of its own. Repeated options add up.
func WithLimitOptions(opts ...interceptors.LimitOption) Option {
	return optionFunc(func(o *options) { o.limitOptions = append(o.limitOptions, opts...) })
}

// overload returns the interceptors that [Config.RateLimit] and
// [Config.MaxInFlight] turn on, the rate limit first; a nil one is off.
// Nothing is added to the chain for a limit that is off.
func (s *Server) overload() (rateLimit, inFlight connect.Interceptor) {
	if s.cfg.RateLimit > 0 {
		rateLimit = interceptors.RateLimit(rate.Limit(s.cfg.RateLimit), s.cfg.RateLimitBurst, s.opts.limitOptions...)
	}
	if s.cfg.MaxInFlight > 0 {
		inFlight = interceptors.MaxInFlight(s.cfg.MaxInFlight, s.opts.limitOptions...)
	}
	return rateLimit, inFlight
}

// validateOverload reports the invalid overload settings of c to bad.
func (c Config) validateOverload(bad func(field, env string, value any, why string)) {
	if !(c.RateLimit >= 0) || math.IsInf(c.RateLimit, 0) {
		bad("RateLimit", "KIT_RATE_LIMIT", c.RateLimit, `want a positive number of calls per second, such as "100" or "0.5" (0 or "off": no limit)`)
	}
	if c.RateLimitBurst < 0 || c.RateLimitBurst > maxOverloadCount {
		bad("RateLimitBurst", "KIT_RATE_LIMIT_BURST", c.RateLimitBurst, "must be between 1 and "+strconv.Itoa(maxOverloadCount)+" (0: one second's worth of calls)")
	} else if c.RateLimitBurst > 0 && c.RateLimit == 0 {
		bad("RateLimitBurst", "KIT_RATE_LIMIT_BURST", c.RateLimitBurst, "needs KIT_RATE_LIMIT (the rate limit is off without it)")
	}
	if c.MaxInFlight < 0 || c.MaxInFlight > maxOverloadCount {
		bad("MaxInFlight", "KIT_MAX_INFLIGHT", c.MaxInFlight, "must be between 1 and "+strconv.Itoa(maxOverloadCount)+` (0 or "off": no bound)`)
	}
	if c.MaxInFlightBytes < 0 || c.MaxInFlightBytes > maxInFlightBytes {
		bad("MaxInFlightBytes", "KIT_MAX_INFLIGHT_BYTES", c.MaxInFlightBytes, "must be between 1 and "+strconv.FormatInt(maxInFlightBytes, 10)+" bytes, such as \"64MiB\" (0: no bound)")
	}
}

// maxOverloadCount bounds a burst and a count of calls in flight: more is
// a typo, not a limit.
const maxOverloadCount = 1 << 30

// maxInFlightBytes bounds [Config.MaxInFlightBytes]: 1TiB is a typo.
const maxInFlightBytes = 1 << 40

// rateOf is the setting of a rate in calls per second, or "off" (0).
func rateOf(env, usage string, ptr func(*Config) *float64) setting {
	return setting{env: env, usage: usage,
		set: func(c *Config, v string) error {
			if strings.EqualFold(v, "off") {
				*ptr(c) = 0
				return nil
			}
			r, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(r) || math.IsInf(r, 0) {
				return errors.New(`want a number of calls per second, such as "100" or "0.5"` + orOff)
			}
			*ptr(c) = r
			return nil
		},
		get: func(c *Config) any {
			if *ptr(c) == 0 {
				return "off"
			}
			return strconv.FormatFloat(*ptr(c), 'g', -1, 64)
		}}
}

// countOf is the setting of a number of calls; off, when allowed, is 0.
func countOf(env, usage string, off bool, ptr func(*Config) *int) setting {
	return setting{env: env, usage: usage,
		set: func(c *Config, v string) error {
			if off && strings.EqualFold(v, "off") {
				*ptr(c) = 0
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				if off {
					return errors.New("want an integer" + orOff)
				}
				return errors.New("want an integer")
			}
			*ptr(c) = n
			return nil
		},
		get: func(c *Config) any {
			if off && *ptr(c) == 0 {
				return "off"
			}
			return *ptr(c)
		}}
}
