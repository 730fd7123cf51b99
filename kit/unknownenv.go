package kit

import (
	"log/slog"
	"regexp"
	"slices"
	"strings"
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

// nearestSetting returns the setting's variable closest to name, within an
// edit distance of 2 (3 for names over 16 characters), or "" if none is.
func nearestSetting(name string) string {
	best, bestDist := "", 3
	if len(name) > 16 {
		bestDist = 4
	}
	for _, s := range settings {
		if d := editDistance(name, s.env); d < bestDist {
			best, bestDist = s.env, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, bytes for
// characters (variable names are ASCII). Written here, a dozen lines,
// rather than bring in a module for a start-up message.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
