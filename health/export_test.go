package health

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
