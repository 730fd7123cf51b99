package kit

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Validate reports every invalid setting of c (after defaults), each named by
// its field and environment variable with the offending value.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, env string, value any, why string) {
		errs = append(errs, fmt.Errorf("%s (%s) %q: %s", field, env, fmt.Sprint(value), why))
	}
	if err := checkAddr(c.Addr); err != nil {
		bad("Addr", "KIT_ADDR", c.Addr, err.Error())
	}
	if c.AdminAddr != AdminOff {
		if err := checkAddr(c.AdminAddr); err != nil {
			bad("AdminAddr", "KIT_ADMIN_ADDR", c.AdminAddr, err.Error()+`, or "off" for no admin listener`)
		} else if c.AdminToken == "" && !c.AdminInsecure && !isLoopback(c.AdminAddr) {
			bad("AdminAddr", "KIT_ADMIN_ADDR", c.AdminAddr,
				"admin listener beyond loopback needs KIT_ADMIN_TOKEN (or KIT_ADMIN_INSECURE=true)")
		}
		if c.Addr == c.AdminAddr && !strings.HasSuffix(c.Addr, ":0") {
			bad("AdminAddr", "KIT_ADMIN_ADDR", c.AdminAddr, "same address as KIT_ADDR")
		}
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		bad("TLSCertFile", "KIT_TLS_CERT_FILE", c.TLSCertFile, "KIT_TLS_CERT_FILE and KIT_TLS_KEY_FILE must be set together")
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		bad("TLSKeyFile", "KIT_TLS_KEY_FILE", c.TLSKeyFile, "KIT_TLS_CERT_FILE and KIT_TLS_KEY_FILE must be set together")
	}
	for _, o := range c.CORSAllowedOrigins {
		if o != "*" && !isOrigin(o) {
			bad("CORSAllowedOrigins", "KIT_CORS_ALLOWED_ORIGINS", o,
				`want an origin such as "https://app.example.com" (scheme, host and port: no path, not even "/"; one "*" at most), or "*"`)
		}
	}
	if c.CORSAllowCredentials && slices.Contains(c.CORSAllowedOrigins, "*") {
		bad("CORSAllowCredentials", "KIT_CORS_ALLOW_CREDENTIALS", c.CORSAllowCredentials,
			`browsers refuse credentials with KIT_CORS_ALLOWED_ORIGINS="*": list the origins`)
	}
	if len(c.CORSAllowedOrigins) == 0 {
		// CORS is off: these would change nothing, and browsers' calls
		// would fail with nothing in the logs.
		if len(c.CORSAllowedHeaders) > 0 {
			bad("CORSAllowedHeaders", "KIT_CORS_ALLOWED_HEADERS", strings.Join(c.CORSAllowedHeaders, ","), "needs KIT_CORS_ALLOWED_ORIGINS (CORS is off without it)")
		}
		if len(c.CORSExposedHeaders) > 0 {
			bad("CORSExposedHeaders", "KIT_CORS_EXPOSED_HEADERS", strings.Join(c.CORSExposedHeaders, ","), "needs KIT_CORS_ALLOWED_ORIGINS (CORS is off without it)")
		}
		if c.CORSAllowCredentials {
			bad("CORSAllowCredentials", "KIT_CORS_ALLOW_CREDENTIALS", c.CORSAllowCredentials, "needs KIT_CORS_ALLOWED_ORIGINS (CORS is off without it)")
		}
	}
	if c.CORSAllowCredentials && slices.Contains(c.CORSExposedHeaders, "*") {
		bad("CORSExposedHeaders", "KIT_CORS_EXPOSED_HEADERS", "*",
			`with KIT_CORS_ALLOW_CREDENTIALS, browsers read "*" as a header named "*" and expose nothing more: list the headers`)
	}
	if c.CORSAllowCredentials {
		for _, o := range c.CORSAllowedOrigins {
			if o != "*" && isOrigin(o) && !pinsSite(o) {
				bad("CORSAllowedOrigins", "KIT_CORS_ALLOWED_ORIGINS", o,
					`with KIT_CORS_ALLOW_CREDENTIALS, a "*" may stand only for subdomains of a named domain ("https://*.example.com") or for a port ("http://localhost:*"): this one matches other sites too, which could then call with your users' cookies`)
			}
		}
	}
	for _, h := range []struct {
		field, env string
		names      []string
	}{
		{"CORSAllowedHeaders", "KIT_CORS_ALLOWED_HEADERS", c.CORSAllowedHeaders},
		{"CORSExposedHeaders", "KIT_CORS_EXPOSED_HEADERS", c.CORSExposedHeaders},
	} {
		for _, name := range h.names {
			switch {
			case name == "*":
			case strings.Contains(name, "*"):
				bad(h.field, h.env, name, `"*" stands alone, for every header; a name with "*" in it would match only itself`)
			case !isHeaderName(name):
				bad(h.field, h.env, name, `want a header name such as "X-Api-Key"`)
			}
		}
	}
	for _, d := range []struct {
		field, env string
		value, max time.Duration // max 0: no bound
	}{
		{"ReadHeaderTimeout", "KIT_READ_HEADER_TIMEOUT", c.ReadHeaderTimeout, 0},
		{"IdleTimeout", "KIT_IDLE_TIMEOUT", c.IdleTimeout, 0},
		{"MaxConnectionAge", "KIT_MAX_CONNECTION_AGE", c.MaxConnectionAge, 0},
		{"ShutdownTimeout", "KIT_SHUTDOWN_TIMEOUT", c.ShutdownTimeout, maxShutdownTimeout},
		{"DrainDelay", "KIT_DRAIN_DELAY", c.DrainDelay, maxDrainDelay},
		{"HTTPClient.DialTimeout", "KIT_CLIENT_DIAL_TIMEOUT", c.HTTPClient.DialTimeout, 0},
		{"HTTPClient.ResolveInterval", "KIT_CLIENT_RESOLVE_INTERVAL", c.HTTPClient.ResolveInterval, 0},
		{"HTTPClient.IdleTimeout", "KIT_CLIENT_IDLE_TIMEOUT", c.HTTPClient.IdleTimeout, 0},
	} {
		switch {
		case d.value < 0:
			bad(d.field, d.env, d.value, "must not be negative")
		case d.max > 0 && d.value > d.max:
			bad(d.field, d.env, d.value, fmt.Sprintf("exceeds %s: a shutdown waits the drain delay, then up to twice the shutdown timeout, and an orchestrator kills the process once its grace period (Kubernetes' terminationGracePeriodSeconds, default 30s) is over", d.max))
		}
	}
	if c.CallTimeout > 0 && c.MaxCallTimeout > 0 && c.CallTimeout > c.MaxCallTimeout {
		bad("CallTimeout", "KIT_CALL_TIMEOUT", c.CallTimeout, fmt.Sprintf("exceeds KIT_MAX_CALL_TIMEOUT (%s)", c.MaxCallTimeout))
	}
	for _, b := range []struct {
		field, env string
		value      int64
		lo, hi     int64
	}{
		{"MaxRequestBytes", "KIT_MAX_REQUEST_BYTES", c.MaxRequestBytes, 1, 1 << 30},
		{"MaxResponseBytes", "KIT_MAX_RESPONSE_BYTES", c.MaxResponseBytes, 1, 1 << 30},
		{"MaxHeaderBytes", "KIT_MAX_HEADER_BYTES", c.MaxHeaderBytes, 4 << 10, 16 << 20},
		{"MaxConcurrentStreams", "KIT_MAX_CONCURRENT_STREAMS", int64(c.MaxConcurrentStreams), 1, 1 << 20},
	} {
		if b.value < b.lo || b.value > b.hi {
			bad(b.field, b.env, b.value, fmt.Sprintf("must be between %d and %d (0 keeps the default)", b.lo, b.hi))
		}
	}
	c.validateOverload(bad)
	c.ClientBreaker.check(bad)
	c.ClientRetry.check(bad)
	c.HTTPClient.check(bad)
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		bad("LogFormat", "KIT_LOG_FORMAT", c.LogFormat, `want "auto", "json" or "text"`)
	}
	if len(errs) > 0 {
		return fmt.Errorf("kit: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, e.g. \":8080\" or \"127.0.0.1:9090\"")
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// isLoopback reports whether addr binds to loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isOrigin reports whether o has the shape of the Origin header a browser
// sends, scheme://host[:port], which CORS compares as a string: an origin
// copied from the address bar with its trailing "/" (or any path) would
// match no call, and browsers' calls would fail with nothing in the logs.
// The host may hold one "*" wildcard ("https://*.example.com"): rs/cors
// splits an origin at its first "*" and takes any other literally, so
// "https://*.*.example.com" would match no call.
func isOrigin(o string) bool {
	scheme, host, ok := strings.Cut(o, "://")
	return ok && scheme != "" && host != "" && !strings.ContainsAny(host, "/?#@ ") && strings.Count(o, "*") <= 1
}

// pinsSite reports whether o, an origin that passed isOrigin, matches one
// site's origins only: its wildcard, if any, stands for a port
// ("http://localhost:*") or for labels in front of a domain of two labels
// or more ("https://*.example.com", "https://pr-*.example.com"), as rs/cors
// matches it (prefix and suffix of the text). "https://*", "https://*.com"
// or "https://*example.com" (which matches "https://evilexample.com") would
// let other sites call with a user's credentials, which the origin "*" is
// refused for. A public suffix ("*.co.uk") cannot be told from a domain.
func pinsSite(o string) bool {
	_, host, _ := strings.Cut(o, "://")
	i := strings.IndexByte(host, '*')
	if i < 0 {
		return true // none, or in the scheme: the host is fixed
	}
	if strings.Contains(host[:i], ":") {
		return true // in the port
	}
	domain, _, _ := strings.Cut(host[i+1:], ":")
	_, rest, ok := strings.Cut(domain, ".")
	return ok && strings.Contains(rest, ".") && !strings.HasSuffix(rest, ".")
}

// isHeaderName reports whether name is an HTTP header name (an RFC 9110
// token), so that a typo such as "X-A;X-B" fails at start rather than
// leaving browsers' calls refused.
func isHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
