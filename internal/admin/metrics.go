package admin

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// RegisterRuntimeCollectors registers the Go runtime collector (go_*), the
// build info collector (go_build_info{path,version,checksum}, the main
// module's as the binary's build info gives them) and the process
// collector (process_*) on reg. Collectors already registered
// there (e.g. by the program itself) are left as they are.
func RegisterRuntimeCollectors(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewBuildInfoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return fmt.Errorf("admin: failed to register runtime collectors: %w", err)
			}
		}
	}
	return nil
}
