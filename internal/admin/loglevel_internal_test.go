package admin

import (
	"log/slog"
	"strings"
	"testing"
)

// FuzzReadLevel reads any PUT /debug/loglevel body: a level or an error,
// never a panic; and the level read shows (as GET answers it) as text that
// reads back as the same level.
func FuzzReadLevel(f *testing.F) {
	for _, seed := range []string{
		"debug", " WARN \n", "info+2", "error-8", `{"level": "warn"}`, `{"level": ""}`, `{"level": null}`, `{}`,
		`{"level": "info", "x": 1}`, `{"level": "info"} trailing`, `{"level": "info"}{"level": "debug"}`, "{", "",
		"warn+9223372036854775807", "debug-9223372036854775808", "info+", "INFO+-1", `"debug"`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		level, err := readLevel(strings.NewReader(body))
		if err != nil {
			return
		}
		var back slog.Level
		if err := back.UnmarshalText([]byte(level.String())); err != nil || back != level {
			t.Fatalf("%q reads as %d, shown as %q, which reads back as %d (%v)", body, level, level.String(), back, err)
		}
	})
}
