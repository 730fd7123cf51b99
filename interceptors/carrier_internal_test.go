package interceptors

import (
	"net/http"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/propagation"
)

func TestHeaderCarrierReadsAndWritesAsOtelsDoes(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	ours, theirs := headerCarrier(h), propagation.HeaderCarrier(h)
	ours.Set("traceparent", "00-1")
	ours.Set("x-b3-traceid", "b3")
	h.Add("Baggage", "a=1")
	h.Add("Baggage", "b=2")
	for _, key := range []string{"traceparent", "Traceparent", "tracestate", "baggage", "x-b3-traceid", "X-B3-Traceid"} {
		if got, want := ours.Get(key), theirs.Get(key); got != want {
			t.Errorf("Get(%q) = %q, want %q", key, got, want)
		}
		if got, want := ours.Values(key), theirs.Values(key); !slices.Equal(got, want) {
			t.Errorf("Values(%q) = %q, want %q", key, got, want)
		}
	}
	got, want := ours.Keys(), theirs.Keys()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Keys() = %q, want %q", got, want)
	}
}
