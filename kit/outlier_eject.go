package kit

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// outlierAddr is the record of the calls to one address: its failed calls
// in a row, and its ejections.
type outlierAddr struct {
	addr  string
	fails atomic.Int32

	// Guarded by dialHealth.mu.
	refs      int         // the round trippers of addr
	ejected   bool        // out of the balancing until timer fires
	kept      bool        // an ejection was refused for the limits, and logged, since its last
	ejections int         // the multiplier of its next ejection's time, less the decay
	returned  time.Time   // when its last ejection ended
	timer     *time.Timer // ends its ejection
}

// result counts a call's verdict on a's address: a success clears its
// failures, and the failures in a row that reach h.failures eject it.
func (h *dialHealth) result(a *outlierAddr, failed bool) {
	if !failed {
		if a.fails.Load() != 0 {
			a.fails.Store(0)
		}
		return
	}
	if a.fails.Add(1) < int32(h.outlier.failures) {
		return
	}
	a.fails.Store(0)
	h.eject(a)
}

// outlierConfig is the ejection's part of [HTTPClientConfig], with the
// logger and metrics of its reports.
type outlierConfig struct {
	failures   int // 0: off
	base       time.Duration
	maxPercent int
	logger     *slog.Logger
	metrics    clientMetrics
}

// addrOf returns the record of addr's calls, made if it was not, for one
// more round tripper (nil when ejection is off).
func (h *dialHealth) addrOf(addr string) *outlierAddr {
	if h.outlier.failures <= 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.addrs[addr]
	if a == nil {
		a = &outlierAddr{addr: addr}
		h.addrs[addr] = a
	}
	a.refs++
	return a
}

// release drops a round tripper's hold on a: the record goes with the
// last one, unless a is ejected (restore drops it then).
func (h *dialHealth) release(a *outlierAddr) {
	if a == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a.refs--
	if a.refs == 0 && !a.ejected && h.addrs[a.addr] == a {
		delete(h.addrs, a.addr)
	}
}

// eject takes a's address out of the balancing of each name it is in
// whose limits allow (see mayEjectLocked), for the time nextEjection says.
// A record no round tripper holds any more (a call that ended after its
// address's round tripper closed) ejects nothing: stopEjections, which
// ends the ejections at the client's close, knows the current records
// only.
func (h *dialHealth) eject(a *outlierAddr) {
	h.mu.Lock()
	if a.ejected || h.closed || h.addrs[a.addr] != a {
		h.mu.Unlock()
		return
	}
	var out []*dialCheck
	for check := range h.tasks[a.addr] {
		if h.mayEjectLocked(check) {
			out = append(out, check)
		}
	}
	if len(out) == 0 {
		first := !a.kept
		a.kept = true
		h.mu.Unlock()
		if !first {
			return
		}
		h.outlier.logger.Warn("HTTP client: address failing calls in a row kept in the balancing: its name has as many addresses left out as it may",
			"peer", a.addr, "failures", h.outlier.failures, "max_ejected_percent", h.outlier.maxPercent)
		return
	}
	d := a.nextEjection(time.Now(), h.outlier.base)
	ejections := a.ejections
	a.ejected = true
	a.kept = false
	for _, check := range out {
		check.ejected = true
	}
	h.wg.Add(1)
	a.timer = time.AfterFunc(d, func() {
		defer h.wg.Done()
		h.restore(a)
	})
	h.mu.Unlock()
	if m := h.outlier.metrics; m.ejections != nil {
		m.ejections.Inc()
		m.ejected.Inc()
	}
	h.outlier.logger.Warn("HTTP client: address left out of the balancing for failing calls in a row",
		"peer", a.addr, "failures", h.outlier.failures, "duration", d, "ejections", ejections)
	for _, check := range out {
		h.mark(check)
	}
}

// nextEjection counts an ejection of a at now, and returns its time: base
// times its ejections (up to maxEjectionMultiplier), less one for each
// base time since its last ejection ended.
func (a *outlierAddr) nextEjection(now time.Time, base time.Duration) time.Duration {
	if !a.returned.IsZero() {
		a.ejections = max(0, a.ejections-int(now.Sub(a.returned)/base))
	}
	a.ejections = min(a.ejections+1, maxEjectionMultiplier)
	return base * time.Duration(a.ejections)
}

// mayEjectLocked reports whether check's connection may be ejected: not
// yet ejected, fewer of its name's connections ejected than the limit (the
// max percent of them, rounded down, and at least one), and another of
// them healthy (neither ejected nor failing to connect).
func (h *dialHealth) mayEjectLocked(check *dialCheck) bool {
	if check.ejected {
		return false
	}
	var total, ejected, healthy int
	for _, checks := range h.tasks {
		for c := range checks {
			if c.tracker != check.tracker || c == check {
				continue
			}
			total++
			switch {
			case c.ejected:
				ejected++
			case !c.probing:
				healthy++
			}
		}
	}
	limit := max(1, (total+1)*h.outlier.maxPercent/100)
	return ejected < limit && healthy > 0
}

// restore puts a's address back in the balancing at the end of its
// ejection.
func (h *dialHealth) restore(a *outlierAddr) {
	h.mu.Lock()
	if !a.ejected {
		h.mu.Unlock()
		return
	}
	a.ejected = false
	a.returned = time.Now()
	a.timer = nil
	a.fails.Store(0)
	var back []*dialCheck
	for check := range h.tasks[a.addr] {
		if check.ejected {
			check.ejected = false
			back = append(back, check)
		}
	}
	if a.refs == 0 && h.addrs[a.addr] == a {
		delete(h.addrs, a.addr)
	}
	h.mu.Unlock()
	if m := h.outlier.metrics; m.ejected != nil {
		m.ejected.Dec()
	}
	h.outlier.logger.Info("HTTP client: address back in the balancing after its ejection", "peer", a.addr)
	for _, check := range back {
		h.mark(check)
	}
}

// stopEjections ends the ejections' timers at the client's close (the
// gauge counts their addresses out no longer).
func (h *dialHealth) stopEjections() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, a := range h.addrs {
		if a.timer != nil && a.timer.Stop() {
			a.timer = nil
			a.ejected = false
			h.wg.Done()
			if m := h.outlier.metrics; m.ejected != nil {
				m.ejected.Dec()
			}
		}
	}
}
