package health

import (
	"encoding/json"
	"net/http"
	"time"
)

// HTTPOption configures [Checker.ReadyHandler] and [Checker.LiveHandler].
type HTTPOption interface {
	applyHTTP(*httpConfig)
}

type httpConfig struct {
	showErrors bool
}

type httpOptionFunc func(*httpConfig)

func (f httpOptionFunc) applyHTTP(c *httpConfig) { f(c) }

// ShowErrors puts each failing check's error text in the response body.
// Error texts can name hosts, addresses and users ("dial tcp
// 10.1.2.3:5432: connection refused"): give it only where every caller may
// see them, as kit's admin listener does on loopback and to the callers
// that send its token. Default: each error text is "hidden" (the status
// code, the check names and their statuses stay), so that a handler
// mounted where the public reaches it gives nothing away, as Spring Boot's
// health endpoint shows no details unless told to.
func ShowErrors() HTTPOption {
	return httpOptionFunc(func(c *httpConfig) { c.showErrors = true })
}

// HideErrors replaces each failing check's error text with "hidden" in the
// response body, which is the default; it undoes an earlier [ShowErrors].
func HideErrors() HTTPOption {
	return httpOptionFunc(func(c *httpConfig) { c.showErrors = false })
}

// ReadyHandler serves readiness (/readyz). It runs the on-probe readiness
// checks, then answers 200 if the whole server ("") is SERVING and 503
// otherwise (a failing critical check, or [Checker.Shutdown]), with a JSON
// body:
//
//	{"status": "SERVING", "services": {"": "SERVING", "example.v1.ProfileService": "SERVING"},
//	 "checks": [{"name": "postgres", "service": "", "critical": true, "mode": "background",
//	   "status": "fail", "error": "hidden",
//	   "last_run": "2025-01-02T15:04:05.123Z", "duration": "1.2ms"}]}
//
// "shutting_down": true is added once Shutdown was called. A check's mode is
// "probe", "background" or "report" (a [Reporter]); its status is "pass",
// "fail" or "pending" (not run yet); "error" is the check's error text
// with [ShowErrors], else "hidden"; "error", "last_run" and "duration" are
// left out when empty. It answers GET and HEAD only (405 otherwise).
func (h *Checker) ReadyHandler(opts ...HTTPOption) http.Handler {
	return h.httpHandler(scope{}, opts)
}

// LiveHandler serves liveness (/healthz). It runs the on-probe liveness
// checks, then answers 200 unless a critical liveness check is failing (503),
// with the JSON body of [Checker.ReadyHandler] less "services". Readiness
// checks and [Checker.Shutdown] never affect it: an orchestrator restarts a
// process that fails liveness. With no liveness check registered it answers
// 200 as long as the process serves HTTP.
func (h *Checker) LiveHandler(opts ...HTTPOption) http.Handler {
	return h.httpHandler(scope{liveness: true}, opts)
}

type report struct {
	Status       string            `json:"status"`
	ShuttingDown bool              `json:"shutting_down,omitempty"`
	Services     map[string]string `json:"services,omitempty"`
	Checks       []checkReport     `json:"checks"`
}

type checkReport struct {
	Name     string     `json:"name"`
	Service  string     `json:"service"`
	Critical bool       `json:"critical"`
	Mode     string     `json:"mode"`
	Status   string     `json:"status"`
	Error    string     `json:"error,omitempty"`
	LastRun  *time.Time `json:"last_run,omitempty"`
	Duration string     `json:"duration,omitempty"`
}

func (h *Checker) httpHandler(s scope, opts []HTTPOption) http.Handler {
	var cfg httpConfig
	for _, o := range opts {
		o.applyHTTP(&cfg)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: use GET or HEAD", http.StatusMethodNotAllowed)
			return
		}
		h.probe(r.Context(), s)
		rep := h.report(s, cfg)
		body, err := json.Marshal(rep)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body = append(body, '\n')
		code := http.StatusOK
		if rep.Status != statusServing.String() {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}

func (h *Checker) report(s scope, cfg httpConfig) report {
	checks, statuses, shutdown := h.snapshot(s)
	rep := report{Checks: make([]checkReport, 0, len(checks))}
	status := statusServing
	for _, c := range checks {
		rep.Checks = append(rep.Checks, c.report(cfg))
		if s.liveness && !c.NonCritical && c.res.failing() {
			status = statusNotServing
		}
	}
	if !s.liveness {
		status = statuses[""]
		rep.ShuttingDown = shutdown
		rep.Services = make(map[string]string, len(statuses))
		for svc, st := range statuses {
			rep.Services[svc] = st.String()
		}
	}
	rep.Status = status.String()
	return rep
}

func (c check) report(cfg httpConfig) checkReport {
	cr := checkReport{
		Name:     c.Name,
		Service:  c.Service,
		Critical: !c.NonCritical,
		Mode:     c.mode(),
		Status:   "pass",
	}
	switch {
	case !c.res.ran:
		cr.Status = "pending"
	case c.res.err != nil:
		cr.Status = "fail"
		cr.Error = "hidden"
		if cfg.showErrors {
			cr.Error = c.res.err.Error()
		}
	}
	if c.res.ran {
		at := c.res.at.UTC()
		cr.LastRun = &at
	}
	if c.res.duration > 0 {
		cr.Duration = c.res.duration.String()
	}
	return cr
}
