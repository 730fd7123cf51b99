package kit

import (
	"testing"
	"time"
)

func TestJitterStaysWithinTenPercent(t *testing.T) {
	t.Parallel()
	const d = time.Minute
	lo, hi := d, d
	for range 10000 {
		j := jitter(d)
		if j < d*9/10 || j > d*11/10 {
			t.Fatalf("jitter(%v) = %v; want within ±10%%", d, j)
		}
		lo, hi = min(lo, j), max(hi, j)
	}
	if hi-lo < d/10 {
		t.Errorf("10 000 jitters of %v spread over %v only (%v to %v)", d, hi-lo, lo, hi)
	}
}
