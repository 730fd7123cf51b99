package kit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// setting is one KIT_* variable (and its flag): how its text sets a field of
// [Config], and how -help shows the field. set gets the trimmed, non-empty
// text and says what it wants when the text does not parse.
type setting struct {
	env     string
	usage   string
	boolean bool // a flag that takes no value
	set     func(c *Config, v string) error
	get     func(c *Config) any // the value -help and the config line show
	secret  bool                // -help shows no value, the config line "[redacted]"
}

var settings = slices.Concat([]setting{
	text("KIT_ADDR", "main listener address", func(c *Config) *string { return &c.Addr }),
	text("KIT_ADMIN_ADDR", `admin listener address, or "off"`, func(c *Config) *string { return &c.AdminAddr }),
	{env: "KIT_ADMIN_TOKEN", usage: "bearer token of the admin endpoints", secret: true,
		set: func(c *Config, v string) error { c.AdminToken = v; return nil },
		get: func(c *Config) any { return c.AdminToken }},
	flagOf("KIT_ADMIN_INSECURE", "allow an admin listener beyond loopback without a token", func(c *Config) *bool { return &c.AdminInsecure }),
	flagOf("KIT_PPROF", "serve /debug/pprof on the admin listener", func(c *Config) *bool { return &c.Pprof }),
	text("KIT_TLS_CERT_FILE", "TLS certificate file", func(c *Config) *string { return &c.TLSCertFile }),
	text("KIT_TLS_KEY_FILE", "TLS key file", func(c *Config) *string { return &c.TLSKeyFile }),
	list("KIT_CORS_ALLOWED_ORIGINS", "comma-separated origins browsers may call from, or *", func(c *Config) *[]string { return &c.CORSAllowedOrigins }),
	list("KIT_CORS_ALLOWED_HEADERS", "comma-separated request headers browsers may send beyond the protocols' own, or *", func(c *Config) *[]string { return &c.CORSAllowedHeaders }),
	flagOf("KIT_CORS_ALLOW_CREDENTIALS", "let browsers call with cookies (needs listed origins)", func(c *Config) *bool { return &c.CORSAllowCredentials }),
	list("KIT_CORS_EXPOSED_HEADERS", "comma-separated response headers browsers may read beyond the protocols' own", func(c *Config) *[]string { return &c.CORSExposedHeaders }),
	flagOf("KIT_METRICS_NATIVE_HISTOGRAMS", "latency histograms are Prometheus native histograms too (scraped over protobuf)", func(c *Config) *bool { return &c.NativeHistograms }),
	flagOf("KIT_TRACE_PUBLIC_ENDPOINT", "callers are untrusted: each call begins its own trace, linked to theirs, without their baggage", func(c *Config) *bool { return &c.TracePublicEndpoint }),
	durationOf("KIT_READ_HEADER_TIMEOUT", "time to read a request's headers", func(c *Config) *time.Duration { return &c.ReadHeaderTimeout }),
	durationOf("KIT_IDLE_TIMEOUT", "close connections idle this long", func(c *Config) *time.Duration { return &c.IdleTimeout }),
	offOf(durationOf("KIT_MAX_CONNECTION_AGE", `retire connections this old ("off" or 0: never)`, func(c *Config) *time.Duration { return &c.MaxConnectionAge })),
	durationOf("KIT_SHUTDOWN_TIMEOUT", "time in-flight calls get at shutdown, and background components after them", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	offOf(durationOf("KIT_DRAIN_DELAY", `keep serving this long after reporting NOT_SERVING ("off" or 0: none)`, func(c *Config) *time.Duration { return &c.DrainDelay })),
	timeoutOf("KIT_CALL_TIMEOUT", `deadline of unary calls that carry none, or "off"`, func(c *Config) *time.Duration { return &c.CallTimeout }),
	timeoutOf("KIT_MAX_CALL_TIMEOUT", `cap on a unary call's deadline, or "off"`, func(c *Config) *time.Duration { return &c.MaxCallTimeout }),
	timeoutOf("KIT_STREAM_TIMEOUT", `deadline of streams that carry none, or "off"`, func(c *Config) *time.Duration { return &c.StreamTimeout }),
	bytesOf("KIT_MAX_REQUEST_BYTES", "largest request message (e.g. 4MiB)", func(c *Config) *int64 { return &c.MaxRequestBytes }),
	bytesOf("KIT_MAX_RESPONSE_BYTES", "largest response message", func(c *Config) *int64 { return &c.MaxResponseBytes }),
	offOf(bytesOf("KIT_MAX_INFLIGHT_BYTES", `request message bytes read at once, across calls ("off" or 0: no bound)`, func(c *Config) *int64 { return &c.MaxInFlightBytes })),
	bytesOf("KIT_MAX_HEADER_BYTES", "largest request header block", func(c *Config) *int64 { return &c.MaxHeaderBytes }),
	{env: "KIT_MAX_CONCURRENT_STREAMS", usage: "concurrent calls per HTTP/2 connection", set: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("want an integer")
		}
		c.MaxConcurrentStreams = n
		return nil
	}, get: func(c *Config) any { return c.MaxConcurrentStreams }},
	{env: "KIT_FRAME_BATCHING", usage: "batch HTTP/2 connections' writes and reads", boolean: true,
		set: func(c *Config, v string) error { on, err := parseBool(v); c.NoFrameBatching = !on; return err },
		get: func(c *Config) any { return !c.NoFrameBatching }},
	{env: "KIT_SYSTEMD_NOTIFY", usage: "tell systemd (NOTIFY_SOCKET) when the server is ready, live and stopping", boolean: true,
		set: func(c *Config, v string) error { on, err := parseBool(v); c.NoSystemdNotify = !on; return err },
		get: func(c *Config) any { return !c.NoSystemdNotify }},
	text("KIT_LOG_FORMAT", "auto, json or text", func(c *Config) *string { return &c.LogFormat }),
	{env: "KIT_LOG_LEVEL", usage: "debug, info, warn or error", set: func(c *Config, v string) error {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return errors.New("want debug, info, warn or error")
		}
		return nil
	}, get: func(c *Config) any { return strings.ToLower(c.LogLevel.String()) }},
	rateOf("KIT_RATE_LIMIT", `calls per second the server admits (the rest get ResourceExhausted), or "off"`, func(c *Config) *float64 { return &c.RateLimit }),
	countOf("KIT_RATE_LIMIT_BURST", "calls admitted at once above KIT_RATE_LIMIT (0: one second's worth)", false, func(c *Config) *int { return &c.RateLimitBurst }),
	countOf("KIT_MAX_INFLIGHT", `unary calls running at once (the rest get Unavailable), or "off"`, true, func(c *Config) *int { return &c.MaxInFlight }),
}, clientBreakerSettings, clientRetrySettings, httpClientSettings, outlierSettings)

// parse sets s's field of c from v, as set does, and refuses a zero ("0",
// "0s") that leaves a field at the zero standing for a default that is
// not: it would silently mean the default (KIT_MAX_REQUEST_BYTES=0 read as
// 4MiB, KIT_SHUTDOWN_TIMEOUT=0 as 15s) to someone who meant "no limit".
// The settings that can be turned off take a zero that means off
// (KIT_RATE_LIMIT, KIT_MAX_INFLIGHT, KIT_CALL_TIMEOUT…), and pass.
func (s setting) parse(c *Config, v string) error {
	if err := s.set(c, v); err != nil {
		return err
	}
	if s.get == nil || !isZeroText(v) {
		return nil
	}
	var fresh Config
	if err := s.set(&fresh, v); err != nil || !reflect.ValueOf(fresh).IsZero() {
		return nil // the zero has a meaning of its own (off)
	}
	var zero Config
	def := zero.withDefaults()
	if d := s.get(&def); !zeroLike(d) {
		return fmt.Errorf("0 is no value of this setting, which cannot be turned off: leave it unset for its default, %v", d)
	}
	return nil
}

// isZeroText reports whether v is a zero number, duration or size.
func isZeroText(v string) bool {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f == 0
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d == 0
	}
	n, err := parseBytes(v)
	return err == nil && n == 0
}

// zeroLike reports whether a setting's value, as -help shows it, is its
// type's zero or "off".
func zeroLike(v any) bool {
	if s, ok := v.(string); ok {
		return s == "" || s == "off"
	}
	return v == nil || reflect.ValueOf(v).IsZero()
}

// flagName is the flag of a setting: KIT_ADMIN_ADDR is -admin-addr.
func (s setting) flagName() string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(s.env, "KIT_"), "_", "-"))
}

// RegisterFlags defines a flag on fs for every field of c, named after its
// environment variable (KIT_ADMIN_ADDR is -admin-addr), that sets the field
// when given. Call it after [ConfigFromEnv] so that flags override the
// environment, then fs.Parse; [New] validates the result, so a flag can mend
// a combination the environment alone gets wrong (KIT_ADMIN_ADDR=:9090 with
// -admin-token).
//
// Each flag's help shows, as its default, the value c has when the flag is
// registered (from the environment, or kit's default), secrets excepted.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	for _, s := range settings {
		fs.Var(&settingFlag{c: c, s: s}, s.flagName(), fmt.Sprintf("%s ($%s)", s.usage, s.env))
	}
}

// settingFlag is the flag.Value of a setting of c.
type settingFlag struct {
	c *Config
	s setting
}

func (f *settingFlag) Set(v string) error { return f.s.parse(f.c, strings.TrimSpace(v)) }

func (f *settingFlag) IsBoolFlag() bool { return f.s.boolean }

// String shows the setting's value in c with the defaults applied: flag
// shows it as the default. The zero settingFlag, which flag makes to tell a
// default worth showing, shows nothing.
func (f *settingFlag) String() string {
	if f.c == nil || f.s.secret {
		return ""
	}
	v := f.s.show(f.c.withDefaults())
	if v == "false" { // a flag's zero: flag shows no default for it
		return ""
	}
	return v
}

// show returns the setting's value in c as its variable would say it.
func (s setting) show(c Config) string {
	switch v := s.get(&c).(type) {
	case time.Duration:
		if v < 0 {
			return "off"
		}
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

// changedSettings returns, for the "config" line New logs, each setting
// whose value in c (its defaults applied) is not kit's default, keyed by
// its variable, in the order of the settings' table: the overrides of a
// service, from its environment, its flags or its code, in one line that a
// fleet's log search compares across services. A secret shows as
// "[redacted]".
func changedSettings(c Config) []slog.Attr {
	c, def := c.withDefaults(), Config{}.withDefaults()
	var attrs []slog.Attr
	for _, s := range settings {
		v := s.show(c)
		if v == s.show(def) {
			continue
		}
		if s.secret {
			v = "[redacted]"
		}
		attrs = append(attrs, slog.String(s.env, v))
	}
	return attrs
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("want true or false")
	}
	return b, nil
}

func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func text(env, usage string, ptr func(*Config) *string) setting {
	return setting{env: env, usage: usage,
		set: func(c *Config, v string) error { *ptr(c) = v; return nil },
		get: func(c *Config) any { return *ptr(c) }}
}

func list(env, usage string, ptr func(*Config) *[]string) setting {
	return setting{env: env, usage: usage,
		set: func(c *Config, v string) error { *ptr(c) = splitList(v); return nil },
		get: func(c *Config) any { return strings.Join(*ptr(c), ",") }}
}

func flagOf(env, usage string, ptr func(*Config) *bool) setting {
	return setting{env: env, usage: usage, boolean: true,
		set: func(c *Config, v string) (err error) { *ptr(c), err = parseBool(v); return err },
		get: func(c *Config) any { return *ptr(c) }}
}

func durationOf(env, usage string, ptr func(*Config) *time.Duration) setting {
	return setting{env: env, usage: usage,
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return errors.New(`want a duration such as "500ms", "15s" or "2m"`)
			}
			*ptr(c) = d
			return nil
		},
		get: func(c *Config) any { return *ptr(c) }}
}

// orOff ends the parse error of every setting that 0 turns off, as "off"
// does: both spellings, the same way everywhere.
const orOff = `, or "off" (or 0)`

// offOf is s, whose zero is off, also taking "off" for it: every setting
// that can be off takes "off" and 0 alike.
func offOf(s setting) setting {
	set := s.set
	s.set = func(c *Config, v string) error {
		if strings.EqualFold(v, "off") {
			v = "0"
		}
		if err := set(c, v); err != nil {
			return fmt.Errorf("%w"+orOff, err)
		}
		return nil
	}
	return s
}

// timeoutOf is durationOf that also takes "off" ([NoTimeout]), as it
// takes a zero ("0", "0s"): no timeout, as a zero timeout is in net/http,
// not the field's zero, which stands for the default.
func timeoutOf(env, usage string, ptr func(*Config) *time.Duration) setting {
	s := durationOf(env, usage, ptr)
	parse := s.set
	s.set = func(c *Config, v string) error {
		if strings.EqualFold(v, "off") {
			*ptr(c) = NoTimeout
			return nil
		}
		if err := parse(c, v); err != nil {
			return errors.New(`want a duration such as "500ms", "15s" or "2m"` + orOff)
		}
		if *ptr(c) < 0 {
			// A Config's negative timeout is NoTimeout, but "-5s" in the
			// environment is more likely a typo than a way to say off.
			return errors.New(`a negative duration is no timeout: write "off" (or 0) for none`)
		}
		if *ptr(c) == 0 {
			*ptr(c) = NoTimeout
		}
		return nil
	}
	return s
}

func bytesOf(env, usage string, ptr func(*Config) *int64) setting {
	return setting{env: env, usage: usage,
		set: func(c *Config, v string) error {
			n, err := parseBytes(v)
			if err != nil {
				return errors.New(`want a size such as "65536", "64KiB" or "4MiB"`)
			}
			*ptr(c) = n
			return nil
		},
		get: func(c *Config) any { return size(*ptr(c)) }}
}

// size is a number of bytes, shown as parseBytes reads it.
type size int64

func (n size) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && int64(n)%u.mult == 0 {
			return strconv.FormatInt(int64(n)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(n), 10)
}

// parseBytes parses a size: a plain number of bytes, or one with a KiB, MiB
// or GiB suffix ("4MiB").
func parseBytes(v string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n * mult, nil
}

// logConfig logs the "config" line of a server of cfg: the version of
// connectkit the program was built with, when known, and the settings
// that differ from kit's defaults.
func (s *Server) logConfig(cfg Config) {
	// The level the server logs at is its level variable's, which
	// WithLogLevel may have given in place of one set from cfg.LogLevel
	// (the admin endpoint reads and sets the same variable).
	cfg.LogLevel = s.level.Level()
	attrs := make([]slog.Attr, 0, 2)
	if v := kitVersion(debug.ReadBuildInfo()); v != "" {
		attrs = append(attrs, slog.String("kit", v))
	}
	attrs = append(attrs, slog.Attr{Key: "settings", Value: slog.GroupValue(changedSettings(cfg)...)})
	s.logger.LogAttrs(context.Background(), slog.LevelInfo, "config", attrs...)
	if cfg.CallTimeout < 0 && cfg.MaxCallTimeout < 0 {
		s.logger.Warn("kit: calls whose client sets no deadline run until their handler returns, and their request bodies may take as long: KIT_CALL_TIMEOUT and KIT_MAX_CALL_TIMEOUT are both off")
	}
}

// modulePath is connectkit's module, whose version the "config" line names.
const modulePath = "github.com/connectkit/connectkit"

// kitVersion returns the version of connectkit that bi says the program
// was built with, for the "config" line and kit_build_info (go_build_info
// names only the main module's): a tag or pseudo-version, "(devel)" for
// connectkit's own binaries built from a checkout, and for a replaced
// module its version and what replaced it ("v1.2.0 => ../connectkit"), as
// go version -m shows it; "" when bi does not know.
func kitVersion(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return ""
	}
	if bi.Main.Path == modulePath {
		return bi.Main.Version
	}
	for _, m := range bi.Deps {
		if m.Path != modulePath {
			continue
		}
		if r := m.Replace; r != nil {
			return strings.TrimSpace(m.Version + " => " + r.Path + " " + r.Version)
		}
		return m.Version
	}
	return ""
}
