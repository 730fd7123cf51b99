// Package benchcpu reports the CPU time a benchmark's process spends per
// operation, as cpu-ns/op: unlike wall time, it does not grow while the
// process waits for a CPU on a busy machine.
package benchcpu

import "testing"

// Start begins measuring; call the returned function after the benchmark's
// loop to report the process's CPU time (user and system) since Start,
// divided by b.N. It reports nothing where the CPU time is not known.
func Start(b *testing.B) (stop func()) {
	start := processCPU()
	return func() {
		if used := processCPU() - start; start > 0 && used > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}
