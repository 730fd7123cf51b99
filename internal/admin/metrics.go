package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// RegisterRuntimeCollectors registers the Go runtime collector (go_*), the
// build info collector (go_build_info{path,version,checksum}, the main
// module's as the binary's build info gives them) and the process
// collector (process_*) on reg. A collector whose metrics reg already
// serves, in part or in full, is left out, so that the program's own keep
// their options: a Go collector with runtime/metrics rules
// (collectors.WithGoCollectorRuntimeMetrics) describes go_goroutines and
// others as the default one does, which reg refuses as duplicates rather
// than as the same collector registered again. These collectors are
// valid, so reg refuses them only for names it already has.
func RegisterRuntimeCollectors(reg prometheus.Registerer) {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewBuildInfoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		// Register checks every descriptor before it adds any: a refused
		// collector leaves reg as it was.
		_ = reg.Register(c)
	}
}
