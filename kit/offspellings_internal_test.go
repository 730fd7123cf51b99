package kit

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
)

// TestZeroNeverReadsAsTheDefault: a "0" given to any setting either turns
// it off (KIT_RATE_LIMIT, KIT_MAX_INFLIGHT, KIT_CALL_TIMEOUT…) or is
// refused with an error naming the variable and its default; it read as
// the default for a dozen settings (KIT_CALL_TIMEOUT=0 as 30s,
// KIT_MAX_REQUEST_BYTES=0 as 4MiB), where KIT_STREAM_TIMEOUT=0 meant none.
func TestZeroNeverReadsAsTheDefault(t *testing.T) {
	t.Parallel()
	def := Config{}.withDefaults()
	for _, s := range settings {
		if s.get == nil {
			continue
		}
		for _, v := range []string{"0", "0s"} {
			c, err := configFrom(func(env string) (string, bool) { return v, env == s.env })
			if err != nil {
				if !strings.Contains(err.Error(), s.env+`="`+v+`"`) {
					t.Errorf("%s=%s: error does not name the variable: %v", s.env, v, err)
				}
				continue
			}
			d := c.withDefaults()
			if got, want := s.get(&d), s.get(&def); reflect.DeepEqual(got, want) && !zeroLike(want) {
				t.Errorf("%s=%s reads as the default, %v, without a word", s.env, v, got)
			}
		}
	}
}

// TestOffSpellings: what each way of saying "off" gives, from the
// environment and from flags.
func TestOffSpellings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env, value string
		check      func(Config) bool
		err        string // in the error, if any
	}{
		{"KIT_RATE_LIMIT", "off", func(c Config) bool { return c.RateLimit == 0 }, ""},
		{"KIT_RATE_LIMIT", "0", func(c Config) bool { return c.RateLimit == 0 }, ""},
		{"KIT_RATE_LIMIT", "none", nil, `KIT_RATE_LIMIT="none": want a number of calls per second, such as "100" or "0.5", or "off" (or 0)`},
		{"KIT_MAX_INFLIGHT", "0", func(c Config) bool { return c.MaxInFlight == 0 }, ""},
		{"KIT_MAX_INFLIGHT", "OFF", func(c Config) bool { return c.MaxInFlight == 0 }, ""},
		{"KIT_MAX_INFLIGHT", "false", nil, `KIT_MAX_INFLIGHT="false": want an integer, or "off" (or 0)`},
		{"KIT_CALL_TIMEOUT", "0", func(c Config) bool { return c.CallTimeout == NoTimeout }, ""},
		{"KIT_MAX_CALL_TIMEOUT", "0s", func(c Config) bool { return c.MaxCallTimeout == NoTimeout }, ""},
		{"KIT_STREAM_TIMEOUT", "off", func(c Config) bool { return c.StreamTimeout == NoTimeout }, ""},
		{"KIT_CALL_TIMEOUT", "-5s", nil, `KIT_CALL_TIMEOUT="-5s": a negative duration is no timeout: write "off" (or 0) for none`},
		{"KIT_STREAM_TIMEOUT", "-1ns", nil, "a negative duration is no timeout"},
		{"KIT_CALL_TIMEOUT", "none", nil, `KIT_CALL_TIMEOUT="none": want a duration such as "500ms", "15s" or "2m", or "off" (or 0)`},
		{"KIT_MAX_REQUEST_BYTES", "0", nil, `KIT_MAX_REQUEST_BYTES="0": 0 is no value of this setting, which cannot be turned off: leave it unset for its default, 4MiB`},
		{"KIT_SHUTDOWN_TIMEOUT", "0s", nil, `KIT_SHUTDOWN_TIMEOUT="0s": 0 is no value of this setting, which cannot be turned off: leave it unset for its default, 15s`},
		{"KIT_MAX_CONCURRENT_STREAMS", "0", nil, "default, 250"},
		{"KIT_CLIENT_BREAKER_FAILURES", "0", nil, "default, 5"},
		{"KIT_CLIENT_OUTLIER_FAILURES", "0", func(c Config) bool { return c.HTTPClient.OutlierFailures == OutlierOff }, ""},
		{"KIT_CLIENT_OUTLIER_FAILURES", "never", nil, `KIT_CLIENT_OUTLIER_FAILURES="never": want an integer, or "off" (or 0)`},
		{"KIT_MAX_INFLIGHT_BYTES", "off", func(c Config) bool { return c.MaxInFlightBytes == 0 }, ""},
		{"KIT_DRAIN_DELAY", "Off", func(c Config) bool { return c.DrainDelay == 0 }, ""},
		{"KIT_MAX_CONNECTION_AGE", "none", nil, `KIT_MAX_CONNECTION_AGE="none": want a duration such as "500ms", "15s" or "2m", or "off" (or 0)`},
		{"KIT_ADMIN_ADDR", "off", func(c Config) bool { return c.AdminAddr == AdminOff }, ""},
		{"KIT_ADMIN_ADDR", "none", nil, `AdminAddr (KIT_ADMIN_ADDR) "none": want host:port, e.g. ":8080" or "127.0.0.1:9090", or "off" for no admin listener`},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			c, err := configFrom(func(env string) (string, bool) { return tc.value, env == tc.env })
			if err == nil {
				err = c.Validate()
			}
			// The flag of the setting says the same.
			fc := Config{}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fc.RegisterFlags(fs)
			flagErr := fs.Parse([]string{"-" + strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(tc.env, "KIT_"), "_", "-")) + "=" + tc.value})
			if flagErr == nil {
				flagErr = fc.Validate()
			}
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("got %v, want an error containing %q", err, tc.err)
				}
				if flagErr == nil {
					t.Errorf("the flag took %q", tc.value)
				}
			case err != nil || flagErr != nil:
				t.Errorf("got %v (flag: %v), want no error", err, flagErr)
			case !tc.check(c) || !tc.check(fc):
				t.Errorf("config %+v (flag: %+v) is not off", c, fc)
			}
		})
	}
}

// TestZeroSpellingsAgree: a setting that takes "0" reads every other
// spelling of zero it parses ("00", "-0", "+0") as "0". KIT_CLIENT_OUTLIER_FAILURES
// took "0" for off but refused "00" as a zero of a setting "which cannot be
// turned off".
func TestZeroSpellingsAgree(t *testing.T) {
	t.Parallel()
	for _, s := range settings {
		read := func(v string) (Config, error) {
			return configFrom(func(env string) (string, bool) { return v, env == s.env })
		}
		want, err := read("0")
		if err != nil {
			continue // "0" is refused, or no value of it: TestZeroNeverReadsAsTheDefault
		}
		for _, v := range []string{"00", "-0", "+0"} {
			got, err := read(v)
			switch {
			case err != nil && strings.Contains(err.Error(), "cannot be turned off"):
				t.Errorf("%s=%s: %v, where %s=0 is taken", s.env, v, err, s.env)
			case err == nil && s.show(got) == v:
				// kept as written: a name or an address, not a number
			case err == nil && !reflect.DeepEqual(got, want):
				t.Errorf("%s=%s reads as %v, %s=0 as %v", s.env, v, s.show(got), s.env, s.show(want))
			}
		}
	}
}
