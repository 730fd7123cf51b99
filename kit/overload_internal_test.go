package kit

import (
	"fmt"
	"strings"
	"testing"
)

func TestOverloadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // substrings of the error; none: valid
		cfg  Config   // when valid
	}{
		{name: "off by default", env: map[string]string{}},
		{name: "off", env: map[string]string{"KIT_RATE_LIMIT": "off", "KIT_MAX_INFLIGHT": "OFF"}},
		{name: "on", env: map[string]string{"KIT_RATE_LIMIT": "250.5", "KIT_RATE_LIMIT_BURST": "50", "KIT_MAX_INFLIGHT": "64"},
			cfg: Config{RateLimit: 250.5, RateLimitBurst: 50, MaxInFlight: 64}},
		{name: "negative rate", env: map[string]string{"KIT_RATE_LIMIT": "-3"}, want: []string{`KIT_RATE_LIMIT) "-3"`, "positive number of calls per second"}},
		{name: "rate not a number", env: map[string]string{"KIT_RATE_LIMIT": "abc"}, want: []string{`KIT_RATE_LIMIT="abc"`, "number of calls per second"}},
		{name: "infinite rate", env: map[string]string{"KIT_RATE_LIMIT": "inf"}, want: []string{`KIT_RATE_LIMIT="inf"`}},
		{name: "burst without rate", env: map[string]string{"KIT_RATE_LIMIT_BURST": "20"}, want: []string{"KIT_RATE_LIMIT_BURST", `"20"`, "needs KIT_RATE_LIMIT"}},
		{name: "negative burst", env: map[string]string{"KIT_RATE_LIMIT": "10", "KIT_RATE_LIMIT_BURST": "-1"}, want: []string{"KIT_RATE_LIMIT_BURST", `"-1"`, "between"}},
		{name: "burst not a number", env: map[string]string{"KIT_RATE_LIMIT": "10", "KIT_RATE_LIMIT_BURST": "off"}, want: []string{`KIT_RATE_LIMIT_BURST="off"`, "integer"}},
		{name: "negative in-flight bound", env: map[string]string{"KIT_MAX_INFLIGHT": "-5"}, want: []string{"KIT_MAX_INFLIGHT", `"-5"`, "between"}},
		{name: "in-flight bound not a number", env: map[string]string{"KIT_MAX_INFLIGHT": "lots"}, want: []string{`KIT_MAX_INFLIGHT="lots"`, `integer, or "off"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := configFrom(lookupIn(tc.env))
			parsed := err == nil
			if parsed {
				err = cfg.Validate()
			}
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.RateLimit != tc.cfg.RateLimit || cfg.RateLimitBurst != tc.cfg.RateLimitBurst || cfg.MaxInFlight != tc.cfg.MaxInFlight {
					t.Errorf("parsed %v %v %v, want %+v", cfg.RateLimit, cfg.RateLimitBurst, cfg.MaxInFlight, tc.cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %v", tc.env)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
			if _, err := New(cfg); parsed && err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

// TestOverloadChainPlace: the limits sit right inside Metrics, the rate
// limit first, and are not in the chain at all when off.
func TestOverloadChainPlace(t *testing.T) {
	t.Parallel()
	types := func(cfg Config, opts ...Option) []string {
		cfg.AdminAddr = AdminOff
		s, err := New(cfg, opts...)
		if err != nil {
			t.Fatal(err)
		}
		var out []string // the pieces around the limits, and the limits
		for _, i := range s.serverChain[0].(composed) {
			switch name := strings.TrimPrefix(fmt.Sprintf("%T", i), "*"); name {
			case "interceptors.metricsInterceptor", "interceptors.rateLimiter", "interceptors.inFlightLimiter",
				"interceptors.recovery", "kit.deadlines":
				out = append(out, name)
			}
		}
		return out
	}
	on := Config{RateLimit: 10, MaxInFlight: 5}
	for _, tc := range []struct {
		name string
		got  []string
		want string
	}{
		{"off", types(Config{}), "interceptors.metricsInterceptor interceptors.recovery kit.deadlines"},
		{"on", types(on), "interceptors.metricsInterceptor interceptors.rateLimiter interceptors.inFlightLimiter interceptors.recovery kit.deadlines"},
		{"without the default chain", types(on, WithoutDefaultInterceptors()), "interceptors.rateLimiter interceptors.inFlightLimiter kit.deadlines"},
	} {
		if got := strings.Join(tc.got, " "); got != tc.want {
			t.Errorf("%s: chain\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}
