// Package benchcpu measures the CPU time a benchmark's process spends per
// operation: unlike wall time, it does not grow while the process waits
// for a CPU on a busy machine.
package benchcpu

import (
	"testing"
	"time"
)

// Start begins measuring; call the returned function after the benchmark's
// loop to report the process's CPU time (user and system) since Start,
// divided by b.N, as cpu-ns/op. It reports nothing where the CPU time is
// not known.
func Start(b *testing.B) (stop func()) {
	start := Process()
	return func() {
		if used := Process() - start; start > 0 && used > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

// Process returns the CPU time (user and system, all threads) this process
// has used, or 0 where it is not known.
func Process() time.Duration { return processCPU() }
