package pubsubbench

import (
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/benchcpu"
)

// CPUMeter measures the CPU time the process spends (user and system, all
// threads, the embedded server's included) over a benchmark: unlike
// throughput, it hardly depends on what else the machine runs.
type CPUMeter struct{ start time.Duration }

// StartCPU starts a CPUMeter.
func StartCPU() CPUMeter { return CPUMeter{start: benchcpu.Process()} }

// Report reports the CPU time per message, in µs.
func (m CPUMeter) Report(b *testing.B, messages int) {
	b.ReportMetric(float64(benchcpu.Process()-m.start)/float64(time.Microsecond)/float64(messages), "cpu-µs/msg")
}
