package kit

import (
	"strings"
	"testing"
	"time"
)

func TestClientBreakerFromEnv(t *testing.T) {
	t.Parallel()
	cfg, err := configFrom(lookupIn(map[string]string{
		"KIT_CLIENT_BREAKER":               "on",
		"KIT_CLIENT_BREAKER_FAILURES":      "3",
		"KIT_CLIENT_BREAKER_FAILURE_RATIO": "0.25",
		"KIT_CLIENT_BREAKER_MIN_CALLS":     "50",
		"KIT_CLIENT_BREAKER_WINDOW":        "30s",
		"KIT_CLIENT_BREAKER_OPEN_TIMEOUT":  "1m",
		"KIT_CLIENT_BREAKER_PROBES":        "3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := ClientBreakerConfig{Enabled: true, ConsecutiveFailures: 3, FailureRatio: 0.25, MinCalls: 50,
		Window: 30 * time.Second, OpenTimeout: time.Minute, Probes: 3}
	if cfg.ClientBreaker != want {
		t.Errorf("ClientBreaker = %+v, want %+v", cfg.ClientBreaker, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	for _, v := range []string{"off", "false", "0"} {
		cfg, err := configFrom(lookupIn(map[string]string{"KIT_CLIENT_BREAKER": v}))
		if err != nil || cfg.ClientBreaker.Enabled {
			t.Errorf("KIT_CLIENT_BREAKER=%s: %+v, %v", v, cfg.ClientBreaker, err)
		}
	}
}

func TestClientBreakerRejectsEachInvalidSetting(t *testing.T) {
	t.Parallel()
	on := map[string]string{"KIT_CLIENT_BREAKER": "on"}
	with := func(env map[string]string) map[string]string {
		for k, v := range on {
			env[k] = v
		}
		return env
	}
	rejectsEach(t, []settingCase{
		{name: "bad switch", env: map[string]string{"KIT_CLIENT_BREAKER": "maybe"}, want: []string{`KIT_CLIENT_BREAKER="maybe"`, `"on" or "off"`}},
		{name: "bad integer", env: with(map[string]string{"KIT_CLIENT_BREAKER_FAILURES": "five"}), want: []string{`KIT_CLIENT_BREAKER_FAILURES="five"`, "integer"}},
		{name: "bad ratio", env: with(map[string]string{"KIT_CLIENT_BREAKER_FAILURE_RATIO": "half"}), want: []string{`KIT_CLIENT_BREAKER_FAILURE_RATIO="half"`, "number"}},
		{name: "ratio above 1", env: with(map[string]string{"KIT_CLIENT_BREAKER_FAILURE_RATIO": "50"}), want: []string{"KIT_CLIENT_BREAKER_FAILURE_RATIO", `"50"`, "at most 1"}},
		{name: "negative failures", env: with(map[string]string{"KIT_CLIENT_BREAKER_FAILURES": "-1"}), want: []string{"KIT_CLIENT_BREAKER_FAILURES", "between 1 and 1000000"}},
		{name: "too many failures", env: with(map[string]string{"KIT_CLIENT_BREAKER_FAILURES": "2000000"}), want: []string{"KIT_CLIENT_BREAKER_FAILURES", "between 1 and 1000000"}},
		{name: "negative min calls", env: with(map[string]string{"KIT_CLIENT_BREAKER_MIN_CALLS": "-5"}), want: []string{"KIT_CLIENT_BREAKER_MIN_CALLS", "between 1 and 1000000"}},
		{name: "bad window", env: with(map[string]string{"KIT_CLIENT_BREAKER_WINDOW": "10"}), want: []string{`KIT_CLIENT_BREAKER_WINDOW="10"`, "duration"}},
		{name: "negative timeout", env: with(map[string]string{"KIT_CLIENT_BREAKER_OPEN_TIMEOUT": "-1s"}), want: []string{"KIT_CLIENT_BREAKER_OPEN_TIMEOUT", "positive"}},
		{name: "too many probes", env: with(map[string]string{"KIT_CLIENT_BREAKER_PROBES": "5000"}), want: []string{"KIT_CLIENT_BREAKER_PROBES", "between 1 and 1000"}},
		{name: "settings of a breaker that is off", env: map[string]string{"KIT_CLIENT_BREAKER_FAILURES": "3", "KIT_CLIENT_BREAKER_OPEN_TIMEOUT": "1m"},
			want: []string{"KIT_CLIENT_BREAKER_FAILURES", "KIT_CLIENT_BREAKER_OPEN_TIMEOUT", "needs KIT_CLIENT_BREAKER=on"}},
	})
}

// settingCase is an environment that New refuses, and what its error must
// mention.
type settingCase struct {
	name string
	env  map[string]string
	want []string
}

// rejectsEach checks that each case's environment is refused, by
// ConfigFromEnv or by New, with an error that mentions each of its wants.
func rejectsEach(t *testing.T, cases []settingCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := configFrom(lookupIn(tc.env))
			if err == nil {
				// As New does.
				_, err = New(cfg)
			}
			if err == nil {
				t.Fatalf("accepted %v", tc.env)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
		})
	}
}
