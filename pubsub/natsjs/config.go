package natsjs

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/connectkit/connectkit/internal/envname"
)

// Config configures a [Broker]. Its zero value is valid: it starts an
// embedded NATS server with JetStream file storage in ./data/nats, reachable
// only from inside the process. Each field names its environment variable
// (read by [ConfigFromEnv]) and its default.
type Config struct {
	// URL of an external NATS cluster (NATS_URL), such as
	// "nats://nats-1:4222,nats://nats-2:4222". Empty (the default) starts an
	// embedded server instead. Errors and logs show it with its passwords
	// and tokens ("nats://user:password@host", "nats://token@host") hidden;
	// a password or token with "/", "?", "#", "%" or "," must be
	// percent-encoded (Validate says so), or the URL would not parse as
	// meant.
	URL string
	// CredentialsFile is a NATS credentials file for the external cluster
	// (NATS_CREDS); it needs URL. Default: none.
	CredentialsFile string
	// TLSCAFile is a PEM file of the certificate authorities that sign the
	// external cluster's certificates (NATS_TLS_CA), for a cluster whose
	// certificates the system's roots do not trust; it needs URL, and turns
	// TLS on. Default: none (a "tls://" URL alone uses the system's roots).
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are the PEM certificate and key this
	// client shows a cluster that verifies clients (NATS_TLS_CERT,
	// NATS_TLS_KEY); they go together, need URL, and turn TLS on. Default:
	// none.
	TLSCertFile, TLSKeyFile string
	// NoConnectRetry makes [New] fail at once when no server of URL
	// answers (NATS_CONNECT_RETRY=false), for a supervisor that restarts
	// the process. Default false: New returns a broker that connects in
	// the background, its Check failing (readiness NOT_SERVING) until it
	// does, so that a Pod started during an outage turns ready as soon as
	// NATS answers instead of crash-looping into Kubernetes' back-off of up
	// to 5 minutes. Either way a server that answers and refuses (bad
	// credentials or TLS, no JetStream, missing permissions) fails New.
	// Ignored without URL.
	NoConnectRetry bool
	// Name is the connection's name, as the server shows it (NATS_NAME),
	// and the embedded server's. Default: OTEL_SERVICE_NAME, when
	// ConfigFromEnv reads the environment, else the base name of the
	// program's executable ("example"), so that the connections of the
	// services sharing a NATS system tell apart in its monitoring (nats
	// server report connections, /connz); [DefaultName] when neither is
	// known. A default's spaces become '-', as do those of the embedded
	// server's name, which nats-server refuses ("server name cannot
	// contain spaces").
	Name string

	// DataDir is where the embedded server stores JetStream's files
	// (NATS_DATA_DIR). Default "data/nats". Ignored with URL.
	DataDir string
	// Listen is the embedded server's client address, "host:port"
	// (NATS_LISTEN), for the nats CLI or other processes; port -1 picks a
	// free port. Default: none, the server is reachable only in-process.
	Listen string
	// SyncInterval is how often the embedded server fsyncs JetStream's files
	// (NATS_SYNC_INTERVAL). A message is acknowledged to its publisher once
	// written to the operating system, so a process crash loses nothing, but
	// an operating system crash or power loss can lose the messages of the
	// last SyncInterval. At least 1s (nats-server panics under 2ns, and
	// fsyncs every store constantly above: NATS_SYNC_ALWAYS is the setting
	// for that). Default 2m, nats-server's own. Ignored with URL.
	SyncInterval time.Duration
	// SyncAlways makes the embedded server fsync every write before
	// acknowledging it (NATS_SYNC_ALWAYS=true): nothing acknowledged is lost
	// to an operating system crash, at a large cost in throughput. Default
	// false. Ignored with URL.
	SyncAlways bool

	// Replicas is the number of replicas of each stream (NATS_REPLICAS): 3
	// on a cluster of 3 or more servers survives the loss of one; 1 keeps
	// each stream on one server, whose loss makes its acknowledged
	// messages unavailable until it is back and loses them with its
	// storage ([New] logs a warning when it finds a cluster with 1). At
	// most the cluster's number of servers: more fail every publish and
	// subscription of a new topic, Unavailable, saying so. Default 1 for
	// the streams a broker creates; left unset, a publisher also leaves an
	// existing stream's replicas as they are (an operator's 3 stays),
	// where a set value is given to it.
	Replicas int
	// MaxAge is how long a topic's stream keeps a message, acknowledged or
	// not (NATS_MAX_AGE); new subscriptions receive what it keeps. At least
	// 100ms. Default 168h (7 days); negative keeps messages forever. Set on
	// the streams of the topics this broker publishes; a subscriber gives it
	// only to a stream it creates (as DuplicateWindow and Replicas).
	MaxAge time.Duration
	// DuplicateWindow is how long a message id is remembered to drop
	// duplicate publishes (NATS_DUPLICATE_WINDOW): at least 100ms, and no
	// longer than MaxAge, as JetStream requires. Default 2m, or MaxAge if
	// that is shorter.
	DuplicateWindow time.Duration
	// PublishWindow is the most publishes awaiting the server's
	// acknowledgement at once (NATS_PUBLISH_WINDOW); publishing blocks
	// while it is full. Default 4096.
	PublishWindow int
	// PublishTimeout is how long a publish waits for the server's
	// acknowledgement before failing, within a quarter more
	// (NATS_PUBLISH_TIMEOUT), and how long
	// the first publish of a topic waits for its stream's creation or
	// lookup. At least 100ms; default 30s.
	PublishTimeout time.Duration
	// MaxAckPending is the most messages a subscription may have delivered
	// and not yet acknowledged, across its instances, including failed
	// messages waiting for their retry (NATS_MAX_ACK_PENDING). Default 10000.
	// No upper bound, as nats-server has none: nothing is sized by it, and
	// an account's limit, which only the server knows, fails Subscribe.
	MaxAckPending int
	// PullExpiry is how long each pull request of a subscription's consumer
	// lasts before the client makes a new one (NATS_PULL_EXPIRY); at least
	// 1s. Default 5s, against nats.go's 30s. While a request waits, the
	// server sends a heartbeat every second (every PullExpiry/2 if
	// shorter); when two go missing (a stall of nats.go's Consume,
	// nats-io/nats.go#1622, or a server that stopped answering), the
	// subscription pulls again on a new inbox, logging a warning, so that
	// such a stall holds messages back 2s at most. After a reconnect it
	// pulls again on a new inbox at once. An idle subscription costs a
	// pull request every PullExpiry and a heartbeat every second.
	PullExpiry time.Duration
	// ReplayInactiveThreshold is how long the server keeps the consumer of
	// a replaying subscription ([pubsub.WithReplay]) once nothing pulls
	// from it (NATS_REPLAY_INACTIVE_THRESHOLD); at least 1s. Default 5m
	// (nats-server's own for a consumer without a durable name is 5s).
	// A subscriber deletes its consumer when its Run returns; this is for
	// the consumer of an instance that crashed or lost its connection. An
	// instance whose connection stays down longer makes its consumer again
	// when it reconnects, from the first message it had delivered without
	// a verdict.
	ReplayInactiveThreshold time.Duration
	// DeadLetterStream names the stream of dead letters
	// (NATS_DEAD_LETTER_STREAM). Default "PUBSUB_DEAD_LETTERS". Dead
	// letters cannot be turned off, which would drop the messages that
	// used up their attempts: "off", "none" and the like are refused, not
	// taken for a stream's name. The
	// services of a NATS system share it: the broker whose dead letter
	// creates it gives it its Replicas and DuplicateWindow, and no broker
	// changes those of an existing one.
	DeadLetterStream string

	// fromEnv marks a Config read by ConfigFromEnv: New then warns of the
	// NATS_* variables that look like a misspelt setting (misspeltEnv).
	fromEnv bool
}

// Defaults of [Config].
const (
	DefaultName             = "connectkit" // when the executable's name is not known
	DefaultDataDir          = "data/nats"
	DefaultSyncInterval     = 2 * time.Minute
	DefaultReplicas         = 1
	DefaultMaxAge           = 7 * 24 * time.Hour
	DefaultDuplicateWindow  = 2 * time.Minute
	DefaultPublishWindow    = 4096
	DefaultPublishTimeout   = 30 * time.Second
	DefaultMaxAckPending    = 10000
	DefaultPullExpiry       = 5 * time.Second
	DefaultDeadLetterStream = "PUBSUB_DEAD_LETTERS"

	DefaultReplayInactiveThreshold = 5 * time.Minute
)

// minPublishTimeout is the shortest PublishTimeout that Validate takes.
const minPublishTimeout = 100 * time.Millisecond

// ConfigFromEnv reads a Config from the NATS_* environment variables named
// on its fields; unset variables keep the defaults. It returns an error
// naming every variable whose value does not parse, as package kit's
// ConfigFromEnv does, or else what [Config.Validate] finds.
//
// A NATS_* variable that names no setting but is close to one (NATS_ULR)
// is no error, but [New] logs it at warn with the setting it most likely
// meant: a misspelt NATS_URL would otherwise start an embedded server
// without a word. Other NATS_* variables (the nats CLI's NATS_USER, a
// Kubernetes Service's NATS_SERVICE_HOST) are left alone.
func ConfigFromEnv() (Config, error) {
	c, err := configFrom(os.Getenv)
	c.fromEnv = err == nil
	return c, err
}

// envNames returns the NATS_* variables configFrom reads: all of them,
// whatever their values.
func envNames() []string {
	var names []string
	_, _ = configFrom(func(name string) string {
		if strings.HasPrefix(name, "NATS_") {
			names = append(names, name)
		}
		return ""
	})
	return names
}

// misspeltEnv returns, for each variable of environ ("NAME=value" entries,
// as os.Environ gives them) that starts with NATS_, names no setting and
// is near one (see [envname.Nearest]), its name and that setting's.
func misspeltEnv(environ []string) [][2]string {
	known := envNames()
	var out [][2]string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "NATS_") || slices.Contains(known, name) {
			continue
		}
		if near := envname.Nearest(name, known); near != "" {
			out = append(out, [2]string{name, near})
		}
	}
	return out
}

func configFrom(getenv func(string) string) (Config, error) {
	c := Config{
		URL:              getenv("NATS_URL"),
		CredentialsFile:  getenv("NATS_CREDS"),
		TLSCAFile:        getenv("NATS_TLS_CA"),
		TLSCertFile:      getenv("NATS_TLS_CERT"),
		TLSKeyFile:       getenv("NATS_TLS_KEY"),
		Name:             getenv("NATS_NAME"),
		DataDir:          getenv("NATS_DATA_DIR"),
		Listen:           getenv("NATS_LISTEN"),
		DeadLetterStream: getenv("NATS_DEAD_LETTER_STREAM"),
	}
	if c.Name == "" {
		c.Name = nameOf(getenv("OTEL_SERVICE_NAME"))
	}
	// Every value that does not parse is reported, as package kit does.
	var errs []error
	parse := func(env, want string, set func(string) error) {
		if v := strings.TrimSpace(getenv(env)); v != "" && set(v) != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want %s", env, v, want))
		}
	}
	for env, dst := range map[string]*time.Duration{
		"NATS_SYNC_INTERVAL":    &c.SyncInterval,
		"NATS_MAX_AGE":          &c.MaxAge,
		"NATS_DUPLICATE_WINDOW": &c.DuplicateWindow,
		"NATS_PUBLISH_TIMEOUT":  &c.PublishTimeout,
		"NATS_PULL_EXPIRY":      &c.PullExpiry,

		"NATS_REPLAY_INACTIVE_THRESHOLD": &c.ReplayInactiveThreshold,
	} {
		parse(env, `a duration such as "30s" or "2m"`, func(v string) (err error) { *dst, err = time.ParseDuration(v); return err })
	}
	for env, dst := range map[string]*int{
		"NATS_REPLICAS":        &c.Replicas,
		"NATS_PUBLISH_WINDOW":  &c.PublishWindow,
		"NATS_MAX_ACK_PENDING": &c.MaxAckPending,
	} {
		parse(env, "an integer", func(v string) (err error) { *dst, err = strconv.Atoi(v); return err })
	}
	parse("NATS_SYNC_ALWAYS", "true or false", func(v string) (err error) { c.SyncAlways, err = strconv.ParseBool(v); return err })
	parse("NATS_CONNECT_RETRY", "true or false", func(v string) error {
		retry, err := strconv.ParseBool(v)
		c.NoConnectRetry = !retry
		return err
	})
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return Config{}, fmt.Errorf("natsjs: invalid config: %w", errors.Join(errs...))
	}
	return c, c.Validate()
}

// Validate reports every invalid setting of c, each named by its field and
// environment variable with the offending value, as package kit's
// Config.Validate does: `Replicas (NATS_REPLICAS) "7": must be 1 to 5`.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, env string, value any, why string) {
		errs = append(errs, fmt.Errorf("%s (%s) %q: %s", field, env, fmt.Sprint(value), why))
	}
	if c.URL == "" && c.CredentialsFile != "" {
		bad("CredentialsFile", "NATS_CREDS", c.CredentialsFile, "is for an external cluster, but NATS_URL is empty: the embedded server would start instead")
	}
	for _, f := range []struct{ field, env, value string }{
		{"TLSCAFile", "NATS_TLS_CA", c.TLSCAFile},
		{"TLSCertFile", "NATS_TLS_CERT", c.TLSCertFile},
		{"TLSKeyFile", "NATS_TLS_KEY", c.TLSKeyFile},
	} {
		if c.URL == "" && f.value != "" {
			bad(f.field, f.env, f.value, "is for an external cluster, but NATS_URL is empty: the embedded server would start instead")
		}
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		bad("TLSCertFile", "NATS_TLS_CERT", c.TLSCertFile, "NATS_TLS_CERT and NATS_TLS_KEY must be set together")
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		bad("TLSKeyFile", "NATS_TLS_KEY", c.TLSKeyFile, "NATS_TLS_CERT and NATS_TLS_KEY must be set together")
	}
	urls := strings.Split(c.URL, ",")
	for i, u := range urls {
		// url.Parse cuts such a secret short and quotes its start in its
		// error, or takes it for a host and nats.go names it in a DNS one.
		u = strings.TrimSpace(u)
		if info, _, ok := cutUserinfo(u); ok {
			if _, err := url.PathUnescape(info); err != nil || strings.ContainsAny(info, "/?#") {
				bad("URL", "NATS_URL", redactURLs(c.URL), `its password or token must be percent-encoded: "/" as %2F, "?" as %3F, "#" as %23, "%" as %25`)
				break
			}
		}
		// nats.go splits the list at every ',', one in a password or
		// token too, and its errors quote the parts: url.Parse's
		// ("nats://user:pass"), or a DNS lookup's ("nats://tok" and
		// "en@host", a URL without user information followed by one
		// with it and no scheme).
		next := ""
		if i+1 < len(urls) {
			next = strings.TrimSpace(urls[i+1])
		}
		_, _, hasInfo := cutUserinfo(u)
		split := strings.Contains(u, "://") && !hasInfo && strings.Contains(next, "@") && !strings.Contains(next, "://")
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		if _, err := url.Parse(u); err != nil || split {
			bad("URL", "NATS_URL", redactURLs(c.URL), `not a comma-separated list of URLs, each with its scheme: a "," in a password or token must be percent-encoded as %2C`)
			break
		}
	}
	if c.URL != "" && c.Listen != "" {
		bad("Listen", "NATS_LISTEN", c.Listen, "is for the embedded server, but NATS_URL selects an external one")
	} else if c.Listen != "" {
		if err := checkListen(c.Listen); err != nil {
			bad("Listen", "NATS_LISTEN", c.Listen, err.Error())
		}
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		bad("Replicas", "NATS_REPLICAS", c.Replicas, "must be 1 to 5")
	} else if c.URL == "" && c.Replicas > 1 {
		bad("Replicas", "NATS_REPLICAS", c.Replicas, "needs a cluster (NATS_URL); the embedded server is one server")
	}
	for _, d := range []struct {
		field, env string
		value      time.Duration
	}{
		{"SyncInterval", "NATS_SYNC_INTERVAL", c.SyncInterval},
		{"PublishTimeout", "NATS_PUBLISH_TIMEOUT", c.PublishTimeout},
	} {
		if d.value < 0 {
			bad(d.field, d.env, d.value, "must not be negative")
		}
	}
	for _, n := range []struct {
		field, env string
		value      int
	}{
		{"PublishWindow", "NATS_PUBLISH_WINDOW", c.PublishWindow},
		{"MaxAckPending", "NATS_MAX_ACK_PENDING", c.MaxAckPending},
	} {
		if n.value < 0 {
			bad(n.field, n.env, n.value, "must not be negative")
		}
	}
	if c.PublishTimeout > 0 && c.PublishTimeout < minPublishTimeout {
		// Shorter, the stream's lookup fails every publish (1µs), or some
		// (1ms): a typo of "30s", not a timeout.
		bad("PublishTimeout", "NATS_PUBLISH_TIMEOUT", c.PublishTimeout, fmt.Sprintf("must be at least %v (or 0 for the default, %v)", minPublishTimeout, DefaultPublishTimeout))
	}
	if c.SyncInterval > 0 && c.SyncInterval < time.Second {
		// Under 2ns nats-server panics creating a stream (rand.Int64N(0)
		// in fileStore.setSyncTimer).
		bad("SyncInterval", "NATS_SYNC_INTERVAL", c.SyncInterval, fmt.Sprintf("must be at least 1s (or 0 for the default, %v; NATS_SYNC_ALWAYS=true fsyncs every write)", DefaultSyncInterval))
	}
	if c.PullExpiry != 0 && c.PullExpiry < time.Second {
		bad("PullExpiry", "NATS_PULL_EXPIRY", c.PullExpiry, fmt.Sprintf("must be at least 1s (or 0 for the default, %v)", DefaultPullExpiry))
	}
	if c.ReplayInactiveThreshold != 0 && c.ReplayInactiveThreshold < time.Second {
		bad("ReplayInactiveThreshold", "NATS_REPLAY_INACTIVE_THRESHOLD", c.ReplayInactiveThreshold, fmt.Sprintf("must be at least 1s (or 0 for the default, %v)", DefaultReplayInactiveThreshold))
	}
	c.validateStreams(bad)
	if len(errs) > 0 {
		return fmt.Errorf("natsjs: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// validateStreams reports the settings of the streams that JetStream would
// reject (nats-server's checkStreamCfg), which would otherwise fail every
// Subscribe and Publish, retried, rather than the start.
func (c Config) validateStreams(bad func(field, env string, value any, why string)) {
	if c.MaxAge > 0 && c.MaxAge < 100*time.Millisecond {
		bad("MaxAge", "NATS_MAX_AGE", c.MaxAge, "must be at least 100ms (or negative: forever)")
	}
	switch d := c.withDefaults(); {
	case c.DuplicateWindow < 0:
		bad("DuplicateWindow", "NATS_DUPLICATE_WINDOW", c.DuplicateWindow, "must not be negative")
	case c.DuplicateWindow > 0 && c.DuplicateWindow < 100*time.Millisecond:
		bad("DuplicateWindow", "NATS_DUPLICATE_WINDOW", c.DuplicateWindow, "must be at least 100ms")
	case d.MaxAge > 0 && d.DuplicateWindow > d.MaxAge:
		bad("DuplicateWindow", "NATS_DUPLICATE_WINDOW", d.DuplicateWindow, fmt.Sprintf(
			"must not exceed MaxAge (NATS_MAX_AGE) %q: a stream remembers ids no longer than it keeps messages", d.MaxAge.String()))
	}
	switch {
	case slices.Contains([]string{"off", "none", "no", "false", "0", "disabled", "disable"}, strings.ToLower(c.DeadLetterStream)):
		bad("DeadLetterStream", "NATS_DEAD_LETTER_STREAM", c.DeadLetterStream,
			"dead letters cannot be turned off (the messages that used up their attempts would be lost): name a stream, or leave it unset for "+DefaultDeadLetterStream)
	case strings.ContainsAny(c.DeadLetterStream, " \t\r\n\f.*>/\\"):
		bad("DeadLetterStream", "NATS_DEAD_LETTER_STREAM", c.DeadLetterStream, "a stream name has no '.', '*', '>', spaces or slashes")
	case len(c.DeadLetterStream) > 255:
		bad("DeadLetterStream", "NATS_DEAD_LETTER_STREAM", c.DeadLetterStream, "a stream name has at most 255 bytes")
	}
}

// checkListen checks a "host:port" address for the embedded server.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New(`want host:port, e.g. "127.0.0.1:4222" (port -1 picks a free one)`)
	}
	if p, err := strconv.Atoi(port); err != nil || p < -1 || p > 65535 {
		return fmt.Errorf("port %q is not -1 to 65535", port)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = executableName()
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxAge < 0 {
		c.MaxAge = 0 // JetStream: no limit
	}
	if c.DuplicateWindow == 0 {
		// No longer than the stream keeps messages, as JetStream requires
		// (and does itself for an unset window).
		c.DuplicateWindow = DefaultDuplicateWindow
		if c.MaxAge > 0 {
			c.DuplicateWindow = min(c.DuplicateWindow, c.MaxAge)
		}
	}
	if c.PublishWindow == 0 {
		c.PublishWindow = DefaultPublishWindow
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.PullExpiry == 0 {
		c.PullExpiry = DefaultPullExpiry
	}
	if c.ReplayInactiveThreshold == 0 {
		c.ReplayInactiveThreshold = DefaultReplayInactiveThreshold
	}
	if c.DeadLetterStream == "" {
		c.DeadLetterStream = DefaultDeadLetterStream
	}
	return c
}

// clusterOptions are the nats.go options of the external cluster's
// credentials and TLS.
func (c Config) clusterOptions() []nats.Option {
	var opts []nats.Option
	if c.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredentialsFile))
	}
	if c.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLSCAFile))
	}
	if c.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLSCertFile, c.TLSKeyFile))
	}
	return opts
}

// executableName is Config.Name's default without OTEL_SERVICE_NAME: the
// base name of the program's executable, or DefaultName.
func executableName() string {
	exe, err := os.Executable()
	if err != nil || exe == "" {
		if len(os.Args) == 0 {
			return DefaultName
		}
		exe = os.Args[0]
	}
	if name := nameOf(strings.TrimSuffix(filepath.Base(exe), ".exe")); name != "" && name != "." && name != string(filepath.Separator) {
		return name
	}
	return DefaultName
}

// nameOf makes s, trimmed, a name the embedded server takes: no spaces.
func nameOf(s string) string {
	return strings.Join(strings.Fields(s), "-")
}
