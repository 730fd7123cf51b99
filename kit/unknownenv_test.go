package kit_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/connectkit/connectkit/kit"
)

// TestUnknownEnvIsLoggedWithTheNearestSetting sets misspelt KIT_* variables
// (t.Setenv: not parallel) and checks that New warns of each, naming the
// setting meant, while the config still loads and known variables apply.
func TestUnknownEnvIsLoggedWithTheNearestSetting(t *testing.T) {
	t.Setenv("KIT_MAX_INFLIGT", "10")            // one letter dropped
	t.Setenv("KIT_SHUTDOWN_TIMOUT", "5s")        // one letter dropped
	t.Setenv("KIT_TOTALLY_UNRELATED_THING", "1") // nothing near
	t.Setenv("KIT_PORT", "8080")                 // a guess at a setting, not a Service's URL
	t.Setenv("KIT_MAX_INFLIGHT", "64")
	// What Kubernetes gives every pod of the namespace of a Service named
	// kit-users, whose named port is grpc: no typo of a setting.
	for name, value := range map[string]string{
		"KIT_USERS_SERVICE_HOST":        "10.0.0.11",
		"KIT_USERS_SERVICE_PORT":        "8080",
		"KIT_USERS_SERVICE_PORT_GRPC":   "8080",
		"KIT_USERS_PORT":                "tcp://10.0.0.11:8080",
		"KIT_USERS_PORT_8080_TCP":       "tcp://10.0.0.11:8080",
		"KIT_USERS_PORT_8080_TCP_PROTO": "tcp",
		"KIT_USERS_PORT_8080_TCP_PORT":  "8080",
		"KIT_USERS_PORT_8080_TCP_ADDR":  "10.0.0.11",
		"KIT_SERVICE_HOST":              "10.0.0.12", // a Service named kit
		"KIT_PORT_9090_UDP_ADDR":        "10.0.0.12",
	} {
		t.Setenv(name, value)
	}
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	if cfg.MaxInFlight != 64 {
		t.Errorf("MaxInFlight = %d, want 64 from KIT_MAX_INFLIGHT", cfg.MaxInFlight)
	}
	var logs bytes.Buffer
	if _, err := kit.New(cfg, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))); err != nil {
		t.Fatalf("New: %v", err)
	}
	got := map[string]string{} // variable → did_you_mean
	for _, line := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		var rec struct {
			Level, Msg, Variable string
			Near                 string `json:"did_you_mean"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg == "unknown KIT_ variable ignored" {
			if rec.Level != "WARN" {
				t.Errorf("%s logged at %s, want WARN", rec.Variable, rec.Level)
			}
			got[rec.Variable] = rec.Near
		}
	}
	want := map[string]string{
		"KIT_MAX_INFLIGT":             "KIT_MAX_INFLIGHT",
		"KIT_SHUTDOWN_TIMOUT":         "KIT_SHUTDOWN_TIMEOUT",
		"KIT_TOTALLY_UNRELATED_THING": "",
		"KIT_PORT":                    "",
	}
	for name, near := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("no warning for %s; logs:\n%s", name, logs.String())
		case g != near:
			t.Errorf("%s: did_you_mean %q, want %q", name, g, near)
		}
	}
	if _, ok := got["KIT_MAX_INFLIGHT"]; ok || len(got) != len(want) {
		t.Errorf("warned of %v, want exactly %v", got, want)
	}
}

// TestConfigWithoutEnvWarnsOfNothing checks that a Config built in code
// (not from the environment) logs no unknown variable, even when the
// environment holds one: only ConfigFromEnv looks at it.
func TestConfigWithoutEnvWarnsOfNothing(t *testing.T) {
	t.Setenv("KIT_MAX_INFLIGT", "10")
	var logs bytes.Buffer
	if _, err := kit.New(kit.Config{}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))); err != nil {
		t.Fatalf("New: %v", err)
	}
	if bytes.Contains(logs.Bytes(), []byte("unknown KIT_ variable")) {
		t.Errorf("New warned of a variable its Config did not come from:\n%s", logs.String())
	}
}
