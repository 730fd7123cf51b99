package kit

import (
	"reflect"
	"testing"
	"time"

	"connectrpc.com/connect"
)

func TestClientRetryFromEnv(t *testing.T) {
	t.Parallel()
	cfg, err := configFrom(lookupIn(map[string]string{
		"KIT_CLIENT_RETRY":                 "on",
		"KIT_CLIENT_RETRY_MAX_ATTEMPTS":    "5",
		"KIT_CLIENT_RETRY_INITIAL_BACKOFF": "50ms",
		"KIT_CLIENT_RETRY_MAX_BACKOFF":     "2s",
		"KIT_CLIENT_RETRY_CODES":           "unavailable, Resource_Exhausted",
		"KIT_CLIENT_RETRY_BUDGET_TOKENS":   "100",
		"KIT_CLIENT_RETRY_BUDGET_RATIO":    "0.5",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := ClientRetryConfig{Enabled: true, MaxAttempts: 5, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second,
		Codes: []connect.Code{connect.CodeUnavailable, connect.CodeResourceExhausted}, BudgetTokens: 100, BudgetRatio: 0.5}
	if !reflect.DeepEqual(cfg.ClientRetry, want) {
		t.Errorf("ClientRetry = %+v, want %+v", cfg.ClientRetry, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	if _, err := New(cfg); err != nil {
		t.Error(err)
	}
}

func TestClientRetryRejectsEachInvalidSetting(t *testing.T) {
	t.Parallel()
	with := func(env map[string]string) map[string]string {
		env["KIT_CLIENT_RETRY"] = "on"
		return env
	}
	rejectsEach(t, []settingCase{
		{name: "bad switch", env: map[string]string{"KIT_CLIENT_RETRY": "yes please"}, want: []string{`KIT_CLIENT_RETRY="yes please"`, `"on" or "off"`}},
		{name: "bad attempts", env: with(map[string]string{"KIT_CLIENT_RETRY_MAX_ATTEMPTS": "three"}), want: []string{`KIT_CLIENT_RETRY_MAX_ATTEMPTS="three"`, "integer"}},
		{name: "too many attempts", env: with(map[string]string{"KIT_CLIENT_RETRY_MAX_ATTEMPTS": "6"}), want: []string{"KIT_CLIENT_RETRY_MAX_ATTEMPTS", "between 1 and 5"}},
		{name: "bad backoff", env: with(map[string]string{"KIT_CLIENT_RETRY_INITIAL_BACKOFF": "100"}), want: []string{`KIT_CLIENT_RETRY_INITIAL_BACKOFF="100"`, "duration"}},
		{name: "negative backoff", env: with(map[string]string{"KIT_CLIENT_RETRY_INITIAL_BACKOFF": "-1s"}), want: []string{"KIT_CLIENT_RETRY_INITIAL_BACKOFF", "positive"}},
		{name: "max below initial", env: with(map[string]string{"KIT_CLIENT_RETRY_INITIAL_BACKOFF": "2s", "KIT_CLIENT_RETRY_MAX_BACKOFF": "1s"}),
			want: []string{"KIT_CLIENT_RETRY_MAX_BACKOFF", "at least KIT_CLIENT_RETRY_INITIAL_BACKOFF (2s)"}},
		{name: "max below the default initial", env: with(map[string]string{"KIT_CLIENT_RETRY_MAX_BACKOFF": "10ms"}),
			want: []string{"KIT_CLIENT_RETRY_MAX_BACKOFF", "at least KIT_CLIENT_RETRY_INITIAL_BACKOFF (100ms)"}},
		{name: "bad code", env: with(map[string]string{"KIT_CLIENT_RETRY_CODES": "unavailable,UNAVAILABLE_NOW"}), want: []string{"KIT_CLIENT_RETRY_CODES", `"UNAVAILABLE_NOW" is none`}},
		{name: "ok is no code", env: with(map[string]string{"KIT_CLIENT_RETRY_CODES": "ok"}), want: []string{"KIT_CLIENT_RETRY_CODES", `"ok" is none`}},
		{name: "no tokens", env: with(map[string]string{"KIT_CLIENT_RETRY_BUDGET_TOKENS": "-3"}), want: []string{"KIT_CLIENT_RETRY_BUDGET_TOKENS", "between 1 and 1000000"}},
		{name: "bad ratio", env: with(map[string]string{"KIT_CLIENT_RETRY_BUDGET_RATIO": "a tenth"}), want: []string{`KIT_CLIENT_RETRY_BUDGET_RATIO="a tenth"`, "number"}},
		{name: "ratio above 1", env: with(map[string]string{"KIT_CLIENT_RETRY_BUDGET_RATIO": "2"}), want: []string{"KIT_CLIENT_RETRY_BUDGET_RATIO", "between 0.001 and 1"}},
		{name: "ratio under a thousandth", env: with(map[string]string{"KIT_CLIENT_RETRY_BUDGET_RATIO": "0.0004"}), want: []string{"KIT_CLIENT_RETRY_BUDGET_RATIO", "between 0.001 and 1"}},
		{name: "settings of retries that are off", env: map[string]string{"KIT_CLIENT_RETRY_MAX_ATTEMPTS": "4", "KIT_CLIENT_RETRY_CODES": "unavailable"},
			want: []string{"KIT_CLIENT_RETRY_MAX_ATTEMPTS", "KIT_CLIENT_RETRY_CODES", "needs KIT_CLIENT_RETRY=on"}},
	})
}
