package health

import "time"

// Watchers returns the number of Watch streams h is serving, for tests.
func Watchers(h *Checker) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.watchers {
		n += len(set)
	}
	return n
}

// SetWatchProbeInterval sets how often h's Watch streams run their on-probe
// checks, for tests.
func SetWatchProbeInterval(h *Checker, d time.Duration) { h.watchProbe = d }

// SetStartupGrace sets how long h's checks that never passed may fail
// before a Warn, for tests.
func SetStartupGrace(h *Checker, d time.Duration) { h.startupGrace = d }
