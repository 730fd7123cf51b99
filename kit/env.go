package kit

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// envReader parses environment variables, collecting one error per variable
// it cannot use, each naming the variable and its value.
type envReader struct {
	lookup func(string) (string, bool)
	errs   []error
}

func (e *envReader) get(name string) (string, bool) {
	v, ok := e.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (e *envReader) fail(name, value, want string) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: %s", name, value, want))
}

func (e *envReader) str(name string) string {
	v, _ := e.get(name)
	return v
}

func (e *envReader) list(name string) []string {
	v, ok := e.get(name)
	if !ok {
		return nil
	}
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (e *envReader) boolean(name string) bool {
	return e.booleanDefault(name, false)
}

func (e *envReader) booleanDefault(name string, def bool) bool {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, v, "want true or false")
	}
	return b
}

func (e *envReader) duration(name string) time.Duration {
	v, ok := e.get(name)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.fail(name, v, `want a duration such as "500ms", "15s" or "2m"`)
	}
	return d
}

// timeout is a duration that "off" turns off ([NoTimeout]).
func (e *envReader) timeout(name string) time.Duration {
	if v, ok := e.get(name); ok && strings.EqualFold(v, "off") {
		return NoTimeout
	}
	return e.duration(name)
}

func (e *envReader) integer(name string) int64 {
	v, ok := e.get(name)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		e.fail(name, v, "want an integer")
	}
	return n
}

// bytes parses a size: a plain number of bytes, or one with a KiB, MiB or
// GiB suffix ("4MiB").
func (e *envReader) bytes(name string) int64 {
	v, ok := e.get(name)
	if !ok {
		return 0
	}
	n, err := parseBytes(v)
	if err != nil {
		e.fail(name, v, `want a size such as "65536", "64KiB" or "4MiB"`)
	}
	return n
}

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

func (e *envReader) level(name string) slog.Level {
	v, ok := e.get(name)
	if !ok {
		return slog.LevelInfo
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		e.fail(name, v, "want debug, info, warn or error")
	}
	return l
}
