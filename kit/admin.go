package kit

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/health"
	"github.com/connectkit/connectkit/internal/admin"
)

// newAdminServer builds the admin listener's server: metrics, pprof, the log
// level and the health probes (see package internal/admin). Its
// WriteTimeout stays zero so that CPU profiles and traces can outlast it.
func (s *Server) newAdminServer() (*http.Server, error) {
	h, err := admin.NewHandler(admin.Config{
		Token:    s.cfg.AdminToken,
		Pprof:    s.cfg.Pprof,
		Gatherer: s.registry,
		Level:    s.level,
		Health:   s.health,
		Logger:   s.logger,
		Loopback: isLoopback(s.cfg.AdminAddr),
	})
	if err != nil {
		return nil, fmt.Errorf("kit: admin endpoints: %w", err)
	}
	s.adminHandler = h
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    int(s.cfg.MaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		ConnState:         s.freshAdmin.adminConnState,
	}, nil
}

// Registry returns the Prometheus registry the server's metrics are in and
// that /metrics on the admin listener serves. Register your own collectors
// on it.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Health returns the server's health model: register checks on it, and
// background components report their state through it. It feeds the gRPC
// health service on the main port and /healthz and /readyz on the admin
// listener.
func (s *Server) Health() *health.Checker { return s.health }

// MountAdmin serves h on the admin listener under the path prefix (such as
// "/pubsub/dead-letters/"), behind the admin token when there is one, and
// lists it with description on the admin index page. h sees request paths
// with the prefix stripped ("/pubsub/dead-letters/redrive" arrives as
// "/redrive"). A prefix without a trailing "/" ("/status") serves that path
// alone, which arrives as "/". It does nothing when the admin listener is
// off.
func (s *Server) MountAdmin(prefix, description string, h http.Handler) {
	if s.adminHandler == nil {
		return
	}
	if !strings.HasSuffix(prefix, "/") {
		h = exactRoot(h)
	}
	s.adminHandler.Handle(prefix, description, http.StripPrefix(strings.TrimSuffix(prefix, "/"), h))
}

// exactRoot shows h the empty path that http.StripPrefix leaves of a
// pattern's whole path as "/", the root that a handler such as a ServeMux
// serves: a ServeMux answers "" with a redirect to "/", which on the admin
// listener is its index page.
func exactRoot(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" { // StripPrefix's own copy of the request
			r.URL.Path, r.URL.RawPath = "/", ""
		}
		h.ServeHTTP(w, r)
	})
}
