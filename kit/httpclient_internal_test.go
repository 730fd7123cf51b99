package kit

import (
	"strings"
	"testing"
	"time"
)

// TestHTTPClientConfigFromEnv checks that the KIT_CLIENT_* variables of the
// HTTP client parse, and that bad values are refused with the variable's
// name.
func TestHTTPClientConfigFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, env, value, want string
	}{
		{name: "not a duration", env: "KIT_CLIENT_DIAL_TIMEOUT", value: "5", want: `KIT_CLIENT_DIAL_TIMEOUT="5"`},
		{name: "negative dial timeout", env: "KIT_CLIENT_DIAL_TIMEOUT", value: "-1s", want: "(KIT_CLIENT_DIAL_TIMEOUT)"},
		{name: "negative resolve interval", env: "KIT_CLIENT_RESOLVE_INTERVAL", value: "-1s", want: "(KIT_CLIENT_RESOLVE_INTERVAL)"},
		{name: "negative idle timeout", env: "KIT_CLIENT_IDLE_TIMEOUT", value: "-1m", want: "(KIT_CLIENT_IDLE_TIMEOUT)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := configFrom(lookupIn(map[string]string{tc.env: tc.value}))
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s=%s: err = %v, want one naming %s", tc.env, tc.value, err, tc.want)
			}
		})
	}
	cfg, err := configFrom(lookupIn(map[string]string{"KIT_CLIENT_DIAL_TIMEOUT": "2s", "KIT_CLIENT_RESOLVE_INTERVAL": "10s", "KIT_CLIENT_IDLE_TIMEOUT": "1m"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (HTTPClientConfig{DialTimeout: 2 * time.Second, ResolveInterval: 10 * time.Second, IdleTimeout: time.Minute}); cfg.HTTPClient != want {
		t.Errorf("HTTPClient = %+v, want %+v", cfg.HTTPClient, want)
	}
}
