package kit

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// setting is one KIT_* variable (and its flag): how its text sets a field of
// [Config]. set gets the trimmed, non-empty text and says what it wants
// when the text does not parse.
type setting struct {
	env     string
	usage   string
	boolean bool // a flag that takes no value
	set     func(c *Config, v string) error
}

var settings = []setting{
	{env: "KIT_ADDR", usage: "main listener address", set: func(c *Config, v string) error { c.Addr = v; return nil }},
	{env: "KIT_ADMIN_ADDR", usage: `admin listener address, or "off"`, set: func(c *Config, v string) error { c.AdminAddr = v; return nil }},
	{env: "KIT_ADMIN_TOKEN", usage: "bearer token of the admin endpoints", set: func(c *Config, v string) error { c.AdminToken = v; return nil }},
	{env: "KIT_ADMIN_INSECURE", usage: "allow an admin listener beyond loopback without a token", boolean: true,
		set: func(c *Config, v string) (err error) { c.AdminInsecure, err = parseBool(v); return err }},
	{env: "KIT_PPROF", usage: "serve /debug/pprof on the admin listener", boolean: true,
		set: func(c *Config, v string) (err error) { c.Pprof, err = parseBool(v); return err }},
	{env: "KIT_TLS_CERT_FILE", usage: "TLS certificate file", set: func(c *Config, v string) error { c.TLSCertFile = v; return nil }},
	{env: "KIT_TLS_KEY_FILE", usage: "TLS key file", set: func(c *Config, v string) error { c.TLSKeyFile = v; return nil }},
	{env: "KIT_CORS_ALLOWED_ORIGINS", usage: "comma-separated origins browsers may call from, or *",
		set: func(c *Config, v string) error { c.CORSAllowedOrigins = splitList(v); return nil }},
	{env: "KIT_READ_HEADER_TIMEOUT", usage: "time to read a request's headers", set: durationOf(func(c *Config) *time.Duration { return &c.ReadHeaderTimeout })},
	{env: "KIT_IDLE_TIMEOUT", usage: "close connections idle this long", set: durationOf(func(c *Config) *time.Duration { return &c.IdleTimeout })},
	{env: "KIT_SHUTDOWN_TIMEOUT", usage: "time in-flight calls get at shutdown, and background components after them", set: durationOf(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{env: "KIT_DRAIN_DELAY", usage: "keep serving this long after reporting NOT_SERVING", set: durationOf(func(c *Config) *time.Duration { return &c.DrainDelay })},
	{env: "KIT_CALL_TIMEOUT", usage: `deadline of unary calls that carry none, or "off"`, set: timeoutOf(func(c *Config) *time.Duration { return &c.CallTimeout })},
	{env: "KIT_MAX_CALL_TIMEOUT", usage: `cap on a unary call's deadline, or "off"`, set: timeoutOf(func(c *Config) *time.Duration { return &c.MaxCallTimeout })},
	{env: "KIT_STREAM_TIMEOUT", usage: `deadline of streams that carry none, or "off"`, set: timeoutOf(func(c *Config) *time.Duration { return &c.StreamTimeout })},
	{env: "KIT_MAX_REQUEST_BYTES", usage: "largest request message (e.g. 4MiB)", set: bytesOf(func(c *Config) *int64 { return &c.MaxRequestBytes })},
	{env: "KIT_MAX_RESPONSE_BYTES", usage: "largest response message", set: bytesOf(func(c *Config) *int64 { return &c.MaxResponseBytes })},
	{env: "KIT_MAX_HEADER_BYTES", usage: "largest request header block", set: bytesOf(func(c *Config) *int64 { return &c.MaxHeaderBytes })},
	{env: "KIT_MAX_CONCURRENT_STREAMS", usage: "concurrent calls per HTTP/2 connection", set: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("want an integer")
		}
		c.MaxConcurrentStreams = n
		return nil
	}},
	{env: "KIT_FRAME_BATCHING", usage: "batch HTTP/2 connections' writes and reads (default true)", boolean: true,
		set: func(c *Config, v string) error { on, err := parseBool(v); c.NoFrameBatching = !on; return err }},
	{env: "KIT_LOG_FORMAT", usage: "auto, json or text", set: func(c *Config, v string) error { c.LogFormat = v; return nil }},
	{env: "KIT_LOG_LEVEL", usage: "debug, info, warn or error", set: func(c *Config, v string) error {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return errors.New("want debug, info, warn or error")
		}
		return nil
	}},
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
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	for _, s := range settings {
		usage := fmt.Sprintf("%s ($%s)", s.usage, s.env)
		set := func(v string) error { return s.set(c, strings.TrimSpace(v)) }
		if s.boolean {
			fs.BoolFunc(s.flagName(), usage, set)
		} else {
			fs.Func(s.flagName(), usage, set)
		}
	}
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

func durationOf(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New(`want a duration such as "500ms", "15s" or "2m"`)
		}
		*field(c) = d
		return nil
	}
}

// timeoutOf is durationOf that also takes "off" ([NoTimeout]).
func timeoutOf(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		if strings.EqualFold(v, "off") {
			*field(c) = NoTimeout
			return nil
		}
		if err := durationOf(field)(c, v); err != nil {
			return errors.New(`want a duration such as "500ms", "15s" or "2m", or "off"`)
		}
		return nil
	}
}

func bytesOf(field func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseBytes(v)
		if err != nil {
			return errors.New(`want a size such as "65536", "64KiB" or "4MiB"`)
		}
		*field(c) = n
		return nil
	}
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
