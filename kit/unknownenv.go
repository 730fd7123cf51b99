package kit

import (
	"log/slog"
	"slices"
	"strings"
)

// envPrefix is the prefix of every variable [ConfigFromEnv] reads.
const envPrefix = "KIT_"

// unknownEnv returns the names in environ ("NAME=value" entries, as
// os.Environ gives them) that start with KIT_ but name no setting, sorted:
// a misspelt KIT_MAX_INFLIGT would otherwise leave its limit off without
// a word.
func unknownEnv(environ []string) []string {
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || slices.ContainsFunc(settings, func(s setting) bool { return s.env == name }) {
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
