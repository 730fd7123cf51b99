package kit

import (
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/connectkit/connectkit/internal/envname"
)

// envPrefix is the prefix of every variable [ConfigFromEnv] reads.
const envPrefix = "KIT_"

// serviceLink matches the variables that Kubernetes gives every pod for
// each Service of its namespace, and Docker for each linked container
// (KIT_USERS_SERVICE_HOST, KIT_USERS_PORT_8080_TCP_ADDR for a Service
// named kit-users): none is a misspelt setting, and a pod would warn of
// seven a Service at each start. Their NAME_PORT, whose name alone could
// be a guess at a setting (KIT_PORT=8080), is told by its value, a URL
// (serviceLinkURL).
var (
	serviceLink    = regexp.MustCompile(`_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT_[0-9]+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)$`)
	serviceLinkURL = regexp.MustCompile(`^(tcp|udp|sctp)://`)
)

// unknownEnv returns the names in environ ("NAME=value" entries, as
// os.Environ gives them) that start with KIT_ but name no setting, sorted:
// a misspelt KIT_MAX_INFLIGT would otherwise leave its limit off without
// a word. A Service's or a linked container's variables ([serviceLink])
// are left out.
func unknownEnv(environ []string) []string {
	var unknown []string
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || slices.ContainsFunc(settings, func(s setting) bool { return s.env == name }) ||
			serviceLink.MatchString(name) || strings.HasSuffix(name, "_PORT") && serviceLinkURL.MatchString(value) {
			continue
		}
		unknown = append(unknown, name)
	}
	slices.Sort(unknown)
	return slices.Compact(unknown)
}

// warnUnknownEnv logs, at warn, each KIT_* variable that ConfigFromEnv
// found and ignored, with the setting it most likely meant, if any.
func warnUnknownEnv(logger *slog.Logger, names []string) {
	for _, name := range names {
		attrs := []any{"variable", name}
		if near := nearestSetting(name); near != "" {
			attrs = append(attrs, "did_you_mean", near)
		}
		logger.Warn("unknown KIT_ variable ignored", attrs...)
	}
}

// nearestSetting returns the setting's variable closest to name, or "" if
// none is near (see [envname.Nearest]).
func nearestSetting(name string) string {
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = s.env
	}
	return envname.Nearest(name, names)
}
