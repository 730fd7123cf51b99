package natsjs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"NATS_URL":              "nats://a:4222,nats://b:4222",
		"NATS_CREDS":            "/etc/nats/app.creds",
		"NATS_TLS_CA":           "/etc/nats/ca.pem",
		"NATS_TLS_CERT":         "/etc/nats/client.pem",
		"NATS_TLS_KEY":          "/etc/nats/client-key.pem",
		"NATS_REPLICAS":         "3",
		"NATS_MAX_AGE":          "24h",
		"NATS_DUPLICATE_WINDOW": "5m",
		"NATS_PUBLISH_WINDOW":   "1024",
		"NATS_SYNC_ALWAYS":      "true",
		"NATS_PULL_EXPIRY":      "10s",
		"NATS_CONNECT_RETRY":    "false",

		"NATS_REPLAY_INACTIVE_THRESHOLD": "2m",
	}
	cfg, err := configFrom(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{URL: env["NATS_URL"], CredentialsFile: "/etc/nats/app.creds",
		TLSCAFile: "/etc/nats/ca.pem", TLSCertFile: "/etc/nats/client.pem", TLSKeyFile: "/etc/nats/client-key.pem", Replicas: 3, MaxAge: 24 * time.Hour,
		DuplicateWindow: 5 * time.Minute, PublishWindow: 1024, SyncAlways: true, PullExpiry: 10 * time.Second, NoConnectRetry: true,
		ReplayInactiveThreshold: 2 * time.Minute}
	if cfg != want {
		t.Errorf("configFrom = %+v, want %+v", cfg, want)
	}
	empty, err := configFrom(func(string) string { return "" })
	if err != nil || empty != (Config{}) {
		t.Errorf("configFrom(no variables) = %+v, %v; want the zero Config", empty, err)
	}
}

func TestConfigFromEnvErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"bad duration":          {map[string]string{"NATS_MAX_AGE": "a week"}, `natsjs: invalid config: NATS_MAX_AGE="a week": want a duration such as "30s" or "2m"`},
		"bad integer":           {map[string]string{"NATS_REPLICAS": "three"}, `NATS_REPLICAS="three": want an integer`},
		"bad bool":              {map[string]string{"NATS_SYNC_ALWAYS": "yes please"}, `NATS_SYNC_ALWAYS="yes please"`},
		"bad connect retry":     {map[string]string{"NATS_CONNECT_RETRY": "never"}, `NATS_CONNECT_RETRY="never": want true or false`},
		"every bad value":       {map[string]string{"NATS_REPLICAS": "three", "NATS_PULL_EXPIRY": "5"}, "NATS_PULL_EXPIRY=\"5\": want a duration such as \"30s\" or \"2m\"\nNATS_REPLICAS=\"three\""},
		"invalid":               {map[string]string{"NATS_REPLICAS": "3"}, `Replicas (NATS_REPLICAS) "3": needs a cluster`},
		"negative":              {map[string]string{"NATS_DUPLICATE_WINDOW": "-1m"}, `DuplicateWindow (NATS_DUPLICATE_WINDOW) "-1m0s": must not be negative`},
		"window beyond max age": {map[string]string{"NATS_MAX_AGE": "1s", "NATS_DUPLICATE_WINDOW": "2m"}, `(NATS_DUPLICATE_WINDOW) "2m0s": must not exceed MaxAge (NATS_MAX_AGE) "1s"`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := configFrom(func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"zero":              {Config{}, ""},
		"short max age":     {Config{MaxAge: time.Minute}, ""}, // the default window shrinks to it
		"creds without url": {Config{CredentialsFile: "app.creds"}, `CredentialsFile (NATS_CREDS) "app.creds": is for an external cluster`},
		"listen random":     {Config{Listen: "127.0.0.1:-1"}, ""},
		"short replay inactive threshold": {Config{ReplayInactiveThreshold: 500 * time.Millisecond},
			`ReplayInactiveThreshold (NATS_REPLAY_INACTIVE_THRESHOLD) "500ms": must be at least 1s (or 0 for the default, 5m0s)`},
		"tls without url":   {Config{TLSCAFile: "ca.pem"}, `TLSCAFile (NATS_TLS_CA) "ca.pem": is for an external cluster`},
		"cert without key":  {Config{URL: "tls://x", TLSCertFile: "c.pem"}, `TLSCertFile (NATS_TLS_CERT) "c.pem": NATS_TLS_CERT and NATS_TLS_KEY must be set together`},
		"key without cert":  {Config{URL: "tls://x", TLSKeyFile: "k.pem"}, `TLSKeyFile (NATS_TLS_KEY) "k.pem": NATS_TLS_CERT and NATS_TLS_KEY must be set together`},
		"tls":               {Config{URL: "tls://x", TLSCAFile: "ca.pem", TLSCertFile: "c.pem", TLSKeyFile: "k.pem"}, ""},
		"listen and url":    {Config{URL: "nats://x", Listen: ":4222"}, `Listen (NATS_LISTEN) ":4222": is for the embedded server`},
		"bad listen":        {Config{Listen: "nowhere"}, `Listen (NATS_LISTEN) "nowhere": want host:port`},
		"bad port":          {Config{Listen: "localhost:99999"}, `port "99999"`},
		"negative sync":     {Config{SyncInterval: -time.Second}, `SyncInterval (NATS_SYNC_INTERVAL) "-1s": must not be negative`},
		"too many replicas": {Config{URL: "nats://x", Replicas: 7}, `Replicas (NATS_REPLICAS) "7": must be 1 to 5`},
		"negative window":   {Config{PublishWindow: -1}, `PublishWindow (NATS_PUBLISH_WINDOW) "-1"`},
		"short pull expiry": {Config{PullExpiry: 500 * time.Millisecond}, `PullExpiry (NATS_PULL_EXPIRY) "500ms": must be at least 1s`},
		"1s pull expiry":    {Config{PullExpiry: time.Second}, ""},
		"publish timeout under 100ms": {Config{PublishTimeout: time.Nanosecond},
			`PublishTimeout (NATS_PUBLISH_TIMEOUT) "1ns": must be at least 100ms`},
		"100ms publish timeout": {Config{PublishTimeout: 100 * time.Millisecond}, ""},
		"max age under 100ms": {Config{MaxAge: 50 * time.Millisecond, DuplicateWindow: 50 * time.Millisecond},
			`MaxAge (NATS_MAX_AGE) "50ms": must be at least 100ms`},
		"window beyond max age": {Config{MaxAge: time.Second, DuplicateWindow: 2 * time.Minute},
			`DuplicateWindow (NATS_DUPLICATE_WINDOW) "2m0s": must not exceed MaxAge (NATS_MAX_AGE) "1s"`},
		"window beyond default max age": {Config{DuplicateWindow: 200 * time.Hour},
			`DuplicateWindow (NATS_DUPLICATE_WINDOW) "200h0m0s": must not exceed MaxAge (NATS_MAX_AGE) "168h0m0s"`},
		"window with messages kept forever": {Config{MaxAge: -1, DuplicateWindow: 200 * time.Hour}, ""},
		"url list":                          {Config{URL: "nats://a:4222, nats://u:p@b:4222,tls://tok@c"}, ""},
		"url list without schemes":          {Config{URL: "u:p@a:4222,u:p@b,c"}, ""},
		"password with an encoded comma":    {Config{URL: "nats://u:p%2Cq@a"}, ""},
		"password with a comma":             {Config{URL: "nats://u:p,q@a"}, `URL (NATS_URL) "nats://u:xxxxx@a": not a comma-separated list`},
		"token with a comma":                {Config{URL: "nats://a, nats://p,q@a"}, `URL (NATS_URL) "nats://a, nats://xxxxx@a": not a comma-separated list`},
		"dotted stream":                     {Config{DeadLetterStream: "dead.letters"}, `DeadLetterStream (NATS_DEAD_LETTER_STREAM) "dead.letters"`},
		"dead letters off":                  {Config{DeadLetterStream: "off"}, `DeadLetterStream (NATS_DEAD_LETTER_STREAM) "off": dead letters cannot be turned off`},
		"dead letters none":                 {Config{DeadLetterStream: "None"}, `DeadLetterStream (NATS_DEAD_LETTER_STREAM) "None": dead letters cannot be turned off`},
		"dead letters in a stream of yours": {Config{DeadLetterStream: "ORDERS_DLQ"}, ""},
		"sync every nanosecond":             {Config{SyncInterval: time.Nanosecond}, `SyncInterval (NATS_SYNC_INTERVAL) "1ns": must be at least 1s`},
		"sync every second":                 {Config{SyncInterval: time.Second}, ""},
		"every error": {Config{PublishWindow: -1, MaxAckPending: -2},
			"PublishWindow (NATS_PUBLISH_WINDOW) \"-1\": must not be negative\nMaxAckPending (NATS_MAX_ACK_PENDING) \"-2\""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestConfigValidateAgreesWithServer: Validate accepts the stream settings
// that the embedded server accepts, and rejects those it rejects, so that a
// bad setting fails at start rather than in every Subscribe's retries.
func TestConfigValidateAgreesWithServer(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"defaults":                          {},
		"short max age":                     {MaxAge: time.Second},
		"max age under 100ms":               {MaxAge: 50 * time.Millisecond, DuplicateWindow: 50 * time.Millisecond},
		"max age 100ms":                     {MaxAge: 100 * time.Millisecond, DuplicateWindow: 100 * time.Millisecond},
		"window beyond default max age":     {DuplicateWindow: 200 * time.Hour},
		"window beyond max age":             {MaxAge: time.Hour, DuplicateWindow: time.Hour + time.Second},
		"window equal to max age":           {MaxAge: time.Hour, DuplicateWindow: time.Hour},
		"long window, messages kept always": {MaxAge: -1, DuplicateWindow: 200 * time.Hour},
		"window under 100ms":                {DuplicateWindow: 50 * time.Millisecond},
		"dead letters with a carriage ret.": {DeadLetterStream: "DEAD\rLETTERS"},
		"dead letters with a long name":     {DeadLetterStream: strings.Repeat("D", 256)},
		"dead letters with a 255-byte name": {DeadLetterStream: strings.Repeat("D", 255)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := New(t.Context(), Config{DataDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			b.cfg = cfg.withDefaults() // what New would run with, had Validate passed
			serverErr := b.ensureStream(t.Context(), "agree", true)
			if serverErr == nil {
				serverErr = b.ensureDeadLetterStream(t.Context())
			}
			validateErr := cfg.Validate()
			if (validateErr == nil) != (serverErr == nil) {
				t.Errorf("Validate() = %v, but the server says %v", validateErr, serverErr)
			}
		})
	}
}

// TestConfigName: the connection's name, unset, is the service's
// (OTEL_SERVICE_NAME, or the executable's name), not one shared by every
// service, which left the connections of services sharing a NATS system
// indistinguishable in its monitoring.
func TestConfigName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{name: "NATS_NAME", env: map[string]string{"NATS_NAME": "billing-1", "OTEL_SERVICE_NAME": "billing"}, want: "billing-1"},
		{name: "OTEL_SERVICE_NAME", env: map[string]string{"OTEL_SERVICE_NAME": " search projection "}, want: "search-projection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := configFrom(func(k string) string { return tc.env[k] })
			if err != nil || cfg.Name != tc.want {
				t.Errorf("configFrom(%v) = name %q, %v; want %q", tc.env, cfg.Name, err, tc.want)
			}
		})
	}
	t.Run("with spaces", func(t *testing.T) {
		t.Parallel()
		// The connection keeps it; the embedded server, which refuses
		// spaces (and failed the start), gets it with dashes.
		b, err := New(t.Context(), Config{DataDir: t.TempDir(), Name: "search projection"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		if got := b.JetStream().Conn().Opts.Name; got != "search projection" {
			t.Errorf("connection name %q, want NATS_NAME's", got)
		}
	})
	t.Run("executable", func(t *testing.T) {
		t.Parallel()
		exe, err := os.Executable()
		if err != nil {
			t.Skip(err)
		}
		want := filepath.Base(exe) // natsjs.test
		b, err := New(t.Context(), Config{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		if got := b.JetStream().Conn().Opts.Name; got != want {
			t.Errorf("connection name %q, want the executable's %q", got, want)
		}
	})
}
