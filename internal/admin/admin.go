// Package admin is the handler of connectkit's admin listener: Prometheus
// metrics, [net/http/pprof] profiles, the run-time log level and the health
// probes, behind an optional bearer token. kit owns the listener; this
// package owns what is served on it.
package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"unicode"

	"github.com/connectkit/connectkit/health"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is what the admin handler serves. An endpoint whose dependency is
// nil is not served (404).
type Config struct {
	// Token, when set, is the bearer token that every endpoint but the
	// probes requires (Authorization: Bearer <token>); a missing or wrong
	// token gets 401 and changes nothing. Default "": no token, for an
	// admin listener on loopback.
	//
	// /healthz and /readyz never require it: the kubelet and load balancers
	// probe without credentials (a token in a Pod spec would be readable by
	// anyone who can read the Pod), and probes only read. Without the token,
	// /readyz hides the checks' error texts, which may name hosts and users.
	Token string
	// Pprof serves the runtime profiles under /debug/pprof/. Default false.
	Pprof bool
	// Gatherer is served on /metrics (e.g. the kit's
	// *prometheus.Registry; see [RegisterRuntimeCollectors]).
	Gatherer prometheus.Gatherer
	// Level is the level variable of the process's log handler, read and
	// changed at /debug/loglevel.
	Level *slog.LevelVar
	// Health serves /healthz (liveness) and /readyz (readiness).
	Health *health.Checker
	// Logger records log level changes and /metrics errors. Default: none.
	Logger *slog.Logger
	// Loopback says the listener is bound to loopback only. Without a
	// Token, a request must then name a loopback host (localhost,
	// 127.0.0.1, [::1]) or gets 403: a web page can point a name of its own
	// at 127.0.0.1 (DNS rebinding) and call the listener as its own origin,
	// reading and changing what it serves. A token, which such a page does
	// not have, lifts the check (for a proxy that keeps its clients' Host).
	// Default false.
	Loopback bool
}

// NewHandler returns the admin handler:
//
//	GET      /                 the list of endpoints served
//	GET      /metrics          Prometheus metrics (text or OpenMetrics)
//	GET      /debug/pprof/...  runtime profiles, if Pprof
//	GET, PUT /debug/loglevel   the log level (see below)
//	GET      /healthz          liveness, no token needed
//	GET      /readyz           readiness, no token needed
//
// GET /debug/loglevel answers {"level":"INFO"}. PUT /debug/loglevel takes
// the new level as a bare word (debug, INFO, warn, error, or with an offset
// like debug-2, case-insensitive, as [slog.Level.UnmarshalText] reads it) or
// as JSON {"level":"debug"}, sets it at once for the whole process, logs the
// change with the caller's address, and answers {"level":"DEBUG",
// "previous":"INFO"}; a bad level is 400 and changes nothing.
//
// Whatever the token, a browser's cross-origin request other than GET,
// HEAD or OPTIONS gets 403 ([http.CrossOriginProtection]): without a token,
// a page in the operator's browser could otherwise POST to the listener
// (a form needs no CORS preflight). See also [Config.Loopback].
//
// More endpoints are added with [Handler.Handle]. NewHandler returns an
// error if cfg.Token cannot be sent in a header.
func NewHandler(cfg Config) (*Handler, error) {
	if strings.IndexFunc(cfg.Token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return nil, errors.New("admin: Token contains white space or control characters")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	a := &Handler{mux: mux, root: mux}
	handle := a.Handle
	if cfg.Gatherer != nil {
		handle("/metrics", "Prometheus metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:          promLogger{logger},
			ErrorHandling:     promhttp.ContinueOnError,
			EnableOpenMetrics: true,
		}))
	}
	if cfg.Pprof {
		// Registered on this mux: importing net/http/pprof also registers
		// its handlers on http.DefaultServeMux, which connectkit never serves.
		handle("/debug/pprof/", "runtime profiles", http.HandlerFunc(pprof.Index))
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	} else {
		mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "runtime profiles are off: KIT_PPROF=true (or -pprof) turns them on", http.StatusNotFound)
		})
	}
	if cfg.Level != nil {
		handle("/debug/loglevel", "log level: GET, or PUT debug|info|warn|error", &levelHandler{level: cfg.Level, logger: logger})
	}
	var probes http.Handler
	if cfg.Health != nil {
		probeMux := http.NewServeMux()
		// Without a token, whoever reaches the listener (loopback, or
		// beyond with Insecure, where it sees the metrics too) sees the
		// checks' errors; with one, a probe without it (the kubelet's)
		// gets them hidden, health's default.
		var shown []health.HTTPOption
		if cfg.Token == "" {
			shown = append(shown, health.ShowErrors())
		}
		probeMux.Handle("/healthz", cfg.Health.LiveHandler(shown...))
		probeMux.Handle("/readyz", cfg.Health.ReadyHandler(shown...))
		probes = probeMux
		// An authorized caller sees the checks' errors.
		handle("/healthz", "liveness (no token needed)", cfg.Health.LiveHandler(health.ShowErrors()))
		handle("/readyz", "readiness (no token needed)", cfg.Health.ReadyHandler(health.ShowErrors()))
	}
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "connectkit admin endpoints:")
		a.mu.Lock()
		defer a.mu.Unlock()
		width := 0
		for _, e := range a.endpoints {
			width = max(width, len(e.pattern))
		}
		for _, e := range a.endpoints {
			fmt.Fprintf(w, "  %-*s  %s\n", width, e.pattern, e.desc)
		}
	})
	if cfg.Token != "" {
		a.root = &guard{token: newToken(cfg.Token), next: mux, probes: probes}
	}
	a.root = http.NewCrossOriginProtection().Handler(a.root)
	if cfg.Loopback && cfg.Token == "" {
		a.root = loopbackHosts{a.root}
	}
	return a, nil
}

// Handler is the admin listener's handler.
type Handler struct {
	mux  *http.ServeMux
	root http.Handler // mux, or the token guard in front of it

	mu        sync.Mutex
	endpoints []endpoint // for the index page
}

// endpoint is a line of the index page.
type endpoint struct{ pattern, desc string }

// ServeHTTP implements http.Handler.
func (a *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.root.ServeHTTP(w, r) }

// Handle serves h at pattern (behind the token, if any) and lists it on the
// index page with desc. It is safe to call while serving.
func (a *Handler) Handle(pattern, desc string, h http.Handler) {
	a.mux.Handle(pattern, h)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.endpoints = append(a.endpoints, endpoint{pattern, desc})
}

// promLogger adapts a slog.Logger to promhttp's error log.
type promLogger struct{ logger *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.logger.Error("serving /metrics", "error", fmt.Sprint(v...))
}
