package kit

import (
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// kit_build_info names connectkit's version and the service's, from the
// build info of a service that depends on connectkit, and "unknown" for
// both without build info; a second server on the same registry finds
// the gauge there, one series still.
func TestBuildInfoLabels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		bi          *debug.BuildInfo
		ok          bool
		kit, server string
	}{
		{name: "a service", bi: &debug.BuildInfo{Main: debug.Module{Path: "example.com/orders", Version: "v0.3.0"},
			Deps: []*debug.Module{{Path: modulePath, Version: "v1.4.0"}}}, ok: true, kit: "v1.4.0", server: "v0.3.0"},
		{name: "no build info", kit: "unknown", server: "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			for range 2 {
				if err := registerBuildInfo(reg, tc.bi, tc.ok); err != nil {
					t.Fatal(err)
				}
			}
			mfs, err := reg.Gather()
			if err != nil || len(mfs) != 1 || mfs[0].GetName() != "kit_build_info" || len(mfs[0].GetMetric()) != 1 {
				t.Fatalf("Gather = %v, %v; want one kit_build_info series", mfs, err)
			}
			m := mfs[0].GetMetric()[0]
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if len(labels) != 2 || labels["version"] != tc.kit || labels["service_version"] != tc.server || m.GetGauge().GetValue() != 1 {
				t.Errorf("kit_build_info %v = %v, want version=%q service_version=%q = 1", labels, m.GetGauge().GetValue(), tc.kit, tc.server)
			}
		})
	}
}
