package kit_test

import (
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/connectkit/connectkit/kit"
)

// A registry given to kit that already holds the program's own runtime
// collectors, configured otherwise than kit's, keeps them: New neither
// fails on their names nor adds its own beside them, and go_build_info is
// served either way.
func TestRegistryWithTheProgramsRuntimeCollectors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		own  []prometheus.Collector
		want string // a family only the program's collector serves
	}{
		{name: "go collector with every runtime metric", own: []prometheus.Collector{
			collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsAll)),
		}, want: "go_gc_heap_allocs_bytes_total"},
		{name: "go collector with the gc's runtime metrics, without memstats", own: []prometheus.Collector{
			collectors.NewGoCollector(collectors.WithGoCollectorMemStatsMetricsDisabled(),
				collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/.*`)})),
		}, want: "go_gc_heap_allocs_bytes_total"},
		{name: "build info and process collectors", own: []prometheus.Collector{
			collectors.NewBuildInfoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{ReportErrors: true}),
		}, want: "process_resident_memory_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			reg.MustRegister(tc.own...)
			srv, err := kit.New(kit.Config{AdminAddr: kit.AdminOff}, kit.WithRegistry(reg))
			if err != nil {
				t.Fatalf("New with the program's own runtime collectors: %v", err)
			}
			t.Cleanup(func() { _ = srv.Close(t.Context()) })
			families, err := reg.Gather()
			if err != nil {
				t.Fatalf("Gather: %v", err)
			}
			served := map[string]bool{}
			for _, f := range families {
				served[f.GetName()] = true
			}
			for _, want := range []string{tc.want, "go_goroutines", "go_build_info"} {
				if !served[want] {
					t.Errorf("registry lacks %s", want)
				}
			}
		})
	}
}
