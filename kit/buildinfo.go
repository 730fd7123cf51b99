package kit

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// registerBuildInfo registers kit_build_info{version, service_version} 1
// on reg: the version of connectkit the program was built with and the
// main module's, so that a rollout of either across services shows on a
// dashboard (go_build_info names only the main module). It is written
// here because client_golang's collectors know neither pair:
// collectors.NewBuildInfoCollector reads only bi.Main, and
// collectors/version.NewCollector reads prometheus/common/version's
// variables, set by -ldflags, and adds branch, tags and others that a
// plain go build leaves empty. One series per process.
func registerBuildInfo(reg prometheus.Registerer, bi *debug.BuildInfo, ok bool) error {
	kitV, serviceV := kitVersion(bi, ok), ""
	if ok && bi != nil {
		serviceV = bi.Main.Version
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "kit_build_info",
		Help:        "Always 1: version is the connectkit module's version the program was built with, service_version the main module's (\"(devel)\" for a build from a checkout, \"unknown\" when the binary holds no build info).",
		ConstLabels: prometheus.Labels{"version": orUnknown(kitV), "service_version": orUnknown(serviceV)},
	})
	g.Set(1)
	_, err := registerOrFind(reg, g)
	return err
}

// orUnknown returns v, or "unknown" (go_build_info's word) when v is empty.
func orUnknown(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}
