package kit

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func TestConfigFromEnvDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := configFrom(lookupIn(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.withDefaults()
	if cfg.Addr != ":8080" || cfg.AdminAddr != "127.0.0.1:9090" || cfg.ShutdownTimeout != 15*time.Second ||
		cfg.MaxRequestBytes != 4<<20 || cfg.LogLevel != slog.LevelInfo || cfg.LogFormat != "auto" {
		t.Errorf("defaults = %+v", cfg)
	}
}

func TestConfigFromEnvParses(t *testing.T) {
	t.Parallel()
	cfg, err := configFrom(lookupIn(map[string]string{
		"KIT_ADDR":                      "127.0.0.1:8081",
		"KIT_ADMIN_ADDR":                "0.0.0.0:9091",
		"KIT_ADMIN_TOKEN":               "s3cret",
		"KIT_MAX_REQUEST_BYTES":         "8MiB",
		"KIT_MAX_HEADER_BYTES":          "32768",
		"KIT_SHUTDOWN_TIMEOUT":          "30s",
		"KIT_MAX_CONNECTION_AGE":        "30m",
		"KIT_CORS_ALLOWED_ORIGINS":      "https://a.example.com, https://b.example.com",
		"KIT_CORS_ALLOWED_HEADERS":      "X-Api-Key, X-Tenant",
		"KIT_CORS_EXPOSED_HEADERS":      "X-Ratelimit-Remaining",
		"KIT_CORS_ALLOW_CREDENTIALS":    "true",
		"KIT_LOG_LEVEL":                 "debug",
		"KIT_PPROF":                     "true",
		"KIT_TRACE_PUBLIC_ENDPOINT":     "true",
		"KIT_METRICS_NATIVE_HISTOGRAMS": "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxRequestBytes != 8<<20 || cfg.MaxHeaderBytes != 32768 || cfg.ShutdownTimeout != 30*time.Second ||
		cfg.MaxConnectionAge != 30*time.Minute || len(cfg.CORSAllowedOrigins) != 2 || cfg.CORSAllowedOrigins[1] != "https://b.example.com" ||
		len(cfg.CORSAllowedHeaders) != 2 || cfg.CORSAllowedHeaders[1] != "X-Tenant" ||
		len(cfg.CORSExposedHeaders) != 1 || cfg.CORSExposedHeaders[0] != "X-Ratelimit-Remaining" || !cfg.CORSAllowCredentials ||
		cfg.LogLevel != slog.LevelDebug || !cfg.Pprof || cfg.AdminToken != "s3cret" || !cfg.TracePublicEndpoint ||
		!cfg.NativeHistograms {
		t.Errorf("parsed = %+v", cfg)
	}
}

func TestConfigRejectsEachInvalidSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{name: "address without port", env: map[string]string{"KIT_ADDR": "localhost"}, want: []string{"KIT_ADDR", `"localhost"`, "host:port"}},
		{name: "bad port", env: map[string]string{"KIT_ADDR": ":http2x"}, want: []string{"KIT_ADDR", "bad port"}},
		{name: "admin beyond loopback without token", env: map[string]string{"KIT_ADMIN_ADDR": "0.0.0.0:9090"}, want: []string{"KIT_ADMIN_ADDR", "KIT_ADMIN_TOKEN"}},
		{name: "admin on the main address", env: map[string]string{"KIT_ADDR": "127.0.0.1:9090"}, want: []string{"KIT_ADMIN_ADDR", "same address"}},
		{name: "cert without key", env: map[string]string{"KIT_TLS_CERT_FILE": "cert.pem"}, want: []string{"KIT_TLS_CERT_FILE", "together"}},
		{name: "key without cert", env: map[string]string{"KIT_TLS_KEY_FILE": "key.pem"}, want: []string{`TLSKeyFile (KIT_TLS_KEY_FILE) "key.pem"`, "together"}},
		{name: "client key without cert", env: map[string]string{"KIT_CLIENT_TLS_KEY_FILE": "key.pem"}, want: []string{`(KIT_CLIENT_TLS_KEY_FILE) "key.pem"`, "together"}},
		{name: "bad duration", env: map[string]string{"KIT_SHUTDOWN_TIMEOUT": "15"}, want: []string{`KIT_SHUTDOWN_TIMEOUT="15"`, "duration"}},
		{name: "bad timeout", env: map[string]string{"KIT_STREAM_TIMEOUT": "forever"}, want: []string{`KIT_STREAM_TIMEOUT="forever"`, `"off"`}},
		{name: "negative duration", env: map[string]string{"KIT_DRAIN_DELAY": "-1s"}, want: []string{"KIT_DRAIN_DELAY", "negative"}},
		{name: "drain delay of years", env: map[string]string{"KIT_DRAIN_DELAY": "2562047h"}, want: []string{`DrainDelay (KIT_DRAIN_DELAY) "2562047h0m0s"`, "exceeds 1h0m0s"}},
		{name: "shutdown timeout of years", env: map[string]string{"KIT_SHUTDOWN_TIMEOUT": "2562047h"}, want: []string{`ShutdownTimeout (KIT_SHUTDOWN_TIMEOUT) "2562047h0m0s"`, "exceeds 1h0m0s"}},
		{name: "negative connection age", env: map[string]string{"KIT_MAX_CONNECTION_AGE": "-30m"}, want: []string{"KIT_MAX_CONNECTION_AGE", "negative"}},
		{name: "default above max", env: map[string]string{"KIT_CALL_TIMEOUT": "10m"}, want: []string{"KIT_CALL_TIMEOUT", "KIT_MAX_CALL_TIMEOUT"}},
		{name: "bad size", env: map[string]string{"KIT_MAX_REQUEST_BYTES": "4MB"}, want: []string{`KIT_MAX_REQUEST_BYTES="4MB"`, "size"}},
		{name: "size out of range", env: map[string]string{"KIT_MAX_HEADER_BYTES": "10"}, want: []string{"KIT_MAX_HEADER_BYTES", "between"}},
		{name: "bad integer", env: map[string]string{"KIT_MAX_CONCURRENT_STREAMS": "many"}, want: []string{"KIT_MAX_CONCURRENT_STREAMS", "integer"}},
		{name: "bad bool", env: map[string]string{"KIT_PPROF": "yes please"}, want: []string{"KIT_PPROF", "true or false"}},
		{name: "bad level", env: map[string]string{"KIT_LOG_LEVEL": "loud"}, want: []string{`KIT_LOG_LEVEL="loud"`}},
		{name: "bad format", env: map[string]string{"KIT_LOG_FORMAT": "xml"}, want: []string{"KIT_LOG_FORMAT", `"xml"`}},
		{name: "bad origin", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "app.example.com"}, want: []string{"KIT_CORS_ALLOWED_ORIGINS", "app.example.com"}},
		{name: "origin with trailing slash", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://app.example.com/"}, want: []string{"KIT_CORS_ALLOWED_ORIGINS", `"https://app.example.com/"`, "no path"}},
		{name: "origin with path", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://a.example.com, https://app.example.com/index.html"}, want: []string{"KIT_CORS_ALLOWED_ORIGINS", "index.html"}},
		{name: "origin with two wildcards", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://*.*.example.com"}, want: []string{"KIT_CORS_ALLOWED_ORIGINS", `"https://*.*.example.com"`, `one "*" at most`}},
		{name: "bad allowed header", env: map[string]string{"KIT_CORS_ALLOWED_HEADERS": "X-Api-Key;X-Tenant"}, want: []string{"KIT_CORS_ALLOWED_HEADERS", "X-Api-Key;X-Tenant", "header name"}},
		{name: "prefix wildcard header", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://app.example.com", "KIT_CORS_ALLOWED_HEADERS": "X-*"}, want: []string{"KIT_CORS_ALLOWED_HEADERS", `"X-*"`, "stands alone"}},
		{name: "bad exposed header", env: map[string]string{"KIT_CORS_EXPOSED_HEADERS": "X Total"}, want: []string{"KIT_CORS_EXPOSED_HEADERS", "X Total"}},
		{name: "credentials with any origin", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "*", "KIT_CORS_ALLOW_CREDENTIALS": "true"}, want: []string{"KIT_CORS_ALLOW_CREDENTIALS", "list the origins"}},
		{name: "credentials with any https origin", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://*", "KIT_CORS_ALLOW_CREDENTIALS": "true"}, want: []string{"KIT_CORS_ALLOWED_ORIGINS", `"https://*"`, "other sites"}},
		{name: "credentials with a top-level domain", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://*.com", "KIT_CORS_ALLOW_CREDENTIALS": "true"}, want: []string{"KIT_CORS_ALLOWED_ORIGINS", `"https://*.com"`}},
		{name: "credentials with a wildcard without its dot", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://*example.com", "KIT_CORS_ALLOW_CREDENTIALS": "true"}, want: []string{"KIT_CORS_ALLOWED_ORIGINS", `"https://*example.com"`}},
		{name: "credentials with any host on a port", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://*:8443", "KIT_CORS_ALLOW_CREDENTIALS": "true"}, want: []string{"KIT_CORS_ALLOWED_ORIGINS", `"https://*:8443"`}},
		{name: "credentials with any exposed header", env: map[string]string{"KIT_CORS_ALLOWED_ORIGINS": "https://app.example.com", "KIT_CORS_EXPOSED_HEADERS": "X-Total, *", "KIT_CORS_ALLOW_CREDENTIALS": "true"}, want: []string{"KIT_CORS_EXPOSED_HEADERS", `"*"`, "list the headers"}},
		{name: "CORS headers without origins", env: map[string]string{"KIT_CORS_ALLOWED_HEADERS": "X-Api-Key", "KIT_CORS_EXPOSED_HEADERS": "X-Total"}, want: []string{"KIT_CORS_ALLOWED_HEADERS", "KIT_CORS_EXPOSED_HEADERS", "needs KIT_CORS_ALLOWED_ORIGINS"}},
		{name: "credentials without origins", env: map[string]string{"KIT_CORS_ALLOW_CREDENTIALS": "true"}, want: []string{"KIT_CORS_ALLOW_CREDENTIALS", "needs KIT_CORS_ALLOWED_ORIGINS"}},
		{name: "two problems at once", env: map[string]string{"KIT_PPROF": "maybe", "KIT_IDLE_TIMEOUT": "soon"}, want: []string{"KIT_PPROF", "KIT_IDLE_TIMEOUT"}},
		{name: "two checks at once", env: map[string]string{"KIT_ADDR": "x", "KIT_LOG_FORMAT": "xml"}, want: []string{"KIT_ADDR", "KIT_LOG_FORMAT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Values that do not parse fail in ConfigFromEnv, the rest in
			// New's Validate.
			cfg, err := configFrom(lookupIn(tc.env))
			if err == nil {
				err = cfg.Validate()
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

func TestParseBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "64KiB": 64 << 10, "4MiB": 4 << 20, "1GiB": 1 << 30, "12B": 12} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "4MB", "1.5MiB", "99999999999999999999"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) succeeded", in)
		}
	}
}

func TestRegisterFlags(t *testing.T) {
	t.Parallel()
	cfg, err := configFrom(lookupIn(map[string]string{"KIT_ADDR": ":9000", "KIT_LOG_LEVEL": "warn"}))
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	err = fs.Parse([]string{"-addr", "127.0.0.1:7000", "-pprof", "-frame-batching=false",
		"-call-timeout", "off", "-max-request-bytes", "8MiB", "-cors-allowed-origins", "https://a.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7000" || !cfg.Pprof || !cfg.NoFrameBatching || cfg.CallTimeout != NoTimeout ||
		cfg.MaxRequestBytes != 8<<20 || cfg.LogLevel != slog.LevelWarn || cfg.CORSAllowedOrigins[0] != "https://a.example.com" {
		t.Errorf("after flags: %+v", cfg)
	}

	fs = flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	err = fs.Parse([]string{"-shutdown-timeout", "15"})
	if err == nil || !strings.Contains(err.Error(), "-shutdown-timeout") || !strings.Contains(err.Error(), "duration") {
		t.Errorf("bad flag value: %v", err)
	}
}

// TestSwitchFlagsTakeAValue: -client-retry and -client-breaker take "on"
// or "off" as their variables do. As boolean flags, "-client-retry off"
// turned retries on, and its "off" ended the flags: -addr after it was
// dropped.
func TestSwitchFlagsTakeAValue(t *testing.T) {
	t.Parallel()
	cfg, err := configFrom(lookupIn(map[string]string{"KIT_CLIENT_RETRY": "on"}))
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-client-retry", "off", "-client-breaker", "on", "-addr", "127.0.0.1:7001"}); err != nil {
		t.Fatal(err)
	}
	if cfg.ClientRetry.Enabled || !cfg.ClientBreaker.Enabled || cfg.Addr != "127.0.0.1:7001" || fs.NArg() != 0 {
		t.Errorf("after -client-retry off -client-breaker on -addr 127.0.0.1:7001: retry %v, breaker %v, addr %q, arguments left %q",
			cfg.ClientRetry.Enabled, cfg.ClientBreaker.Enabled, cfg.Addr, fs.Args())
	}
}

func TestFlagsMendTheEnvironment(t *testing.T) {
	t.Parallel()
	// An admin listener beyond loopback needs a token: the environment
	// alone is invalid, the flag mends it, and only New's check decides.
	env := lookupIn(map[string]string{"KIT_ADMIN_ADDR": "0.0.0.0:9090"})
	cfg, err := configFrom(env)
	if err != nil {
		t.Fatalf("ConfigFromEnv checked more than the values: %v", err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "KIT_ADMIN_TOKEN") {
		t.Errorf("without the flag: Validate() = %v, want an error naming KIT_ADMIN_TOKEN", err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-admin-token", "s3cret"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("with -admin-token: %v", err)
	}
}

// -help shows each flag's value before parsing as its default: the
// environment's, or kit's; never a secret's.
func TestFlagHelpShowsDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := configFrom(lookupIn(map[string]string{"KIT_CALL_TIMEOUT": "off", "KIT_ADMIN_TOKEN": "s3cret", "KIT_LOG_LEVEL": "warn", "KIT_CLIENT_RETRY": "on"}))
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	var help strings.Builder
	fs.SetOutput(&help)
	fs.PrintDefaults()
	for flagName, want := range map[string]string{
		"call-timeout": "(default off)", "max-call-timeout": "(default 5m0s)", "addr": "(default :8080)",
		"max-request-bytes": "(default 4MiB)", "max-header-bytes": "(default 64KiB)", "log-level": "(default warn)",
		"frame-batching": "(default true)", "max-concurrent-streams": "(default 250)",
		// The on/off flags show the value they take, not a boolean's.
		"client-retry": "(default on)", "client-breaker": "(default off)",
		// The balanced HTTP client's durations show its defaults, not 0s.
		"client-dial-timeout": "(default 5s)", "client-resolve-interval": "(default 30s)", "client-idle-timeout": "(default 1m30s)",
	} {
		_, rest, _ := strings.Cut(help.String(), "  -"+flagName+"\n")
		if rest == "" {
			_, rest, _ = strings.Cut(help.String(), "  -"+flagName+" ")
		}
		if line, _, _ := strings.Cut(rest, "\n  -"); !strings.Contains(line, want) {
			t.Errorf("-%s: %q, want %s", flagName, line, want)
		}
	}
	if strings.Contains(help.String(), "s3cret") {
		t.Errorf("help shows the admin token:\n%s", help.String())
	}
	if !strings.Contains(help.String(), "-pprof\n") || strings.Contains(help.String(), "(default false)") {
		t.Errorf("boolean flags: want -pprof without a value and no (default false):\n%s", help.String())
	}
}

// TestConfigAcceptsOrigins checks the origin shapes browsers send, and
// rs/cors' one-wildcard form, pass Validate.
func TestConfigAcceptsOrigins(t *testing.T) {
	t.Parallel()
	cfg := Config{CORSAllowedOrigins: []string{"https://app.example.com", "http://localhost:5173", "https://*.example.com"}}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	// With credentials, wildcards that stay within one site.
	cfg = Config{CORSAllowCredentials: true, CORSAllowedOrigins: []string{
		"https://app.example.com", "https://*.example.com", "https://pr-*.example.com:8443", "http://localhost:*", "*://app.example.com",
	}}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}
