package kit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
)

// TestNewLogsTheSettingsThatDifferFromTheDefaults runs a server whose
// config sets a few settings, through the JSON logger a service uses, and
// checks that New logged one "config" line with exactly those settings,
// keyed by their variables and written as the variables take them, the
// admin token redacted and nowhere in the log: a fleet's log search
// compares services' overrides from it, where before only the listeners'
// addresses were logged at start.
func TestNewLogsTheSettingsThatDifferFromTheDefaults(t *testing.T) {
	t.Parallel()
	const token = "s3cr3t-admin-token"
	cfg := kit.Config{
		Addr:            "127.0.0.1:0",
		AdminAddr:       "127.0.0.1:0",
		AdminToken:      token,
		DrainDelay:      time.Millisecond,
		CallTimeout:     kit.NoTimeout,
		MaxRequestBytes: 8 << 20,
		NoFrameBatching: true,
		ShutdownTimeout: kit.DefaultShutdownTimeout, // kit's default, given: not a change
	}
	var logs syncBuffer
	srv, err := kit.New(cfg, kit.WithLogger(kit.NewLogger(&logs, "json", slog.LevelInfo)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	res, err := http.Get("http://" + srv.AdminAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	want := map[string]string{
		"KIT_ADDR":              "127.0.0.1:0",
		"KIT_ADMIN_ADDR":        "127.0.0.1:0",
		"KIT_ADMIN_TOKEN":       "[redacted]",
		"KIT_DRAIN_DELAY":       "1ms",
		"KIT_CALL_TIMEOUT":      "off",
		"KIT_MAX_REQUEST_BYTES": "8MiB",
		"KIT_FRAME_BATCHING":    "false",
	}
	log := []byte(logs.String())
	var found int
	for line := range bytes.Lines(log) {
		var rec struct {
			Level, Msg string
			Settings   map[string]string
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg != "config" {
			continue
		}
		found++
		if rec.Level != "INFO" || !maps.Equal(rec.Settings, want) {
			t.Errorf("config line at %s with settings %v, want INFO with %v", rec.Level, rec.Settings, want)
		}
	}
	if found != 1 {
		t.Errorf("%d config lines, want 1; log:\n%s", found, log)
	}
	if bytes.Contains(log, []byte(token)) {
		t.Errorf("the admin token is in the log:\n%s", log)
	}
}

// TestConfigLineNamesTheLevelOfWithLogLevel checks that the config line's
// KIT_LOG_LEVEL is the level the server logs at, that of the variable
// given with kit.WithLogLevel (which the admin endpoint reads and sets),
// not Config.LogLevel, which the server then does not use: a platform
// package that sets its own level said nothing of it (debug, from code),
// or a KIT_LOG_LEVEL the server ignored.
func TestConfigLineNamesTheLevelOfWithLogLevel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		cfgLevel   slog.Level // Config.LogLevel, as KIT_LOG_LEVEL sets it
		level      slog.Level // the variable given with WithLogLevel
		want       string     // KIT_LOG_LEVEL in the line; "" for none (the default)
		wantInLine bool
	}{
		{name: "code sets debug, config default", cfgLevel: slog.LevelInfo, level: slog.LevelDebug, want: "debug", wantInLine: true},
		{name: "config says debug, code keeps info", cfgLevel: slog.LevelDebug, level: slog.LevelInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			level := new(slog.LevelVar)
			level.Set(tc.level)
			var logs syncBuffer
			cfg := kit.Config{Addr: "127.0.0.1:0", AdminAddr: "off", LogLevel: tc.cfgLevel}
			// slog's handler writes as it is called; kit.NewLogger's
			// buffers info lines and writes them a moment later.
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))
			if _, err := kit.New(cfg, kit.WithLogger(logger), kit.WithLogLevel(level)); err != nil {
				t.Fatal(err)
			}
			var found bool
			for line := range bytes.Lines([]byte(logs.String())) {
				var rec struct {
					Msg      string
					Settings map[string]string
				}
				if err := json.Unmarshal(line, &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec.Msg != "config" {
					continue
				}
				found = true
				got, ok := rec.Settings["KIT_LOG_LEVEL"]
				if ok != tc.wantInLine || got != tc.want {
					t.Errorf("config line's KIT_LOG_LEVEL = %q (present %v), want %q (present %v); settings %v",
						got, ok, tc.want, tc.wantInLine, rec.Settings)
				}
			}
			if !found {
				t.Errorf("no config line; log:\n%s", logs.String())
			}
		})
	}
}

// TestBothCallTimeoutsOffWarns: with KIT_CALL_TIMEOUT and
// KIT_MAX_CALL_TIMEOUT both off nothing bounds a call whose client sets no
// deadline (nor its request body), which New says at warn; one of them on
// bounds it, and New says nothing.
func TestBothCallTimeoutsOffWarns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		call, max time.Duration
		warn      bool
	}{
		{"both off", kit.NoTimeout, kit.NoTimeout, true},
		{"call timeout off, cap on", kit.NoTimeout, 0, false},
		{"cap off, call timeout on", 0, kit.NoTimeout, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			cfg := kit.Config{Addr: "127.0.0.1:0", AdminAddr: "off", CallTimeout: tc.call, MaxCallTimeout: tc.max}
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			if _, err := kit.New(cfg, kit.WithLogger(logger)); err != nil {
				t.Fatal(err)
			}
			warned := strings.Contains(logs.String(), `"level":"WARN","msg":"kit: calls whose client sets no deadline run until their handler returns`)
			if warned != tc.warn {
				t.Errorf("warned %v, want %v; log:\n%s", warned, tc.warn, logs.String())
			}
		})
	}
}
