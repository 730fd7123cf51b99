package interceptors

import (
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestRateText covers the limits too fast for a test to see refused.
func TestRateText(t *testing.T) {
	t.Parallel()
	for limit, want := range map[rate.Limit]string{
		1e6:                         "1000000 calls/s",
		12345.5:                     "12345.5 calls/s",
		1e20:                        "1e+20 calls/s",
		rate.Every(time.Minute):     "1 call every 1m0s",
		rate.Every(100 * time.Hour): "1 call every 100h0m0s",
	} {
		if got := rateText(limit); got != want {
			t.Errorf("rateText(%v) = %q, want %q", float64(limit), got, want)
		}
	}
}
