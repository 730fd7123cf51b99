package health

import "context"

// Ready runs the on-probe readiness checks, as a probe of /readyz does
// (sharing the runs already in flight), and reports whether the whole
// server ("") is SERVING, the status for which [Checker.ReadyHandler]
// answers 200. When it is not, failing names the critical readiness checks
// that fail or have not passed yet, sorted. Once [Checker.Shutdown] was
// called, the server is NOT_SERVING whatever failing holds (empty when
// every check passed; the on-probe checks no longer run, so their last
// results count). It returns when every check has a result or ctx is done, whichever comes
// first; a check still running then counts by its previous result.
func (h *Checker) Ready(ctx context.Context) (serving bool, failing []string) {
	return h.probeStatus(ctx, scope{})
}

// Live runs the on-probe liveness checks, as a probe of /healthz does, and
// reports whether no critical liveness check fails, the status for which
// [Checker.LiveHandler] answers 200; failing names those that do, sorted.
// Readiness and [Checker.Shutdown] never affect it. It returns as
// [Checker.Ready] does.
func (h *Checker) Live(ctx context.Context) (live bool, failing []string) {
	return h.probeStatus(ctx, scope{liveness: true})
}

// probeStatus probes s and returns its status as the HTTP handlers compute
// it, with the critical checks in s that fail.
func (h *Checker) probeStatus(ctx context.Context, s scope) (ok bool, failing []string) {
	h.probe(ctx, s)
	checks, statuses, _ := h.snapshot(s) // sorted by name
	for _, c := range checks {
		if !c.NonCritical && c.res.failing() {
			failing = append(failing, c.Name)
		}
	}
	if s.liveness {
		return len(failing) == 0, failing
	}
	return statuses[""] == statusServing, failing
}
