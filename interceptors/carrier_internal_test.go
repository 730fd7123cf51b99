package interceptors

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
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

// FuzzHeaderCarrier extracts a W3C trace context and baggage, as the chain
// does, from headers holding fuzzed traceparent, tracestate and baggage
// (under a fuzzed key's spelling) through headerCarrier and through otel's
// HeaderCarrier: both must read the same, and Get and Values of the fuzzed
// key must agree.
func FuzzHeaderCarrier(f *testing.F) {
	for _, seed := range []struct{ key, traceparent, tracestate, baggage string }{
		{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "congo=t61rcWkgMzE", "a=1,b=2"},
		{"TRACEPARENT", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "", ""},
		{"x-b3-traceid", "00-garbage-01", "a=b=c", "=;;,"},
		{"baggage", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "", "k=v;p=1,k2=%ZZ"},
		{"tracestate", "01-00000000000000000000000000000000-0000000000000000-01-extra", "x@y=z", ""},
		{"Traceparent", " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ", "", ""},
	} {
		f.Add(seed.key, seed.traceparent, seed.tracestate, seed.baggage)
	}
	propagator := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	f.Fuzz(func(t *testing.T, key, traceparent, tracestate, baggageValue string) {
		h := http.Header{}
		for k, v := range map[string]string{"Traceparent": traceparent, "Tracestate": tracestate, "Baggage": baggageValue} {
			if v != "" {
				h.Add(k, v)
			}
		}
		h[key] = append(h[key], "raw")
		ours, theirs := headerCarrier(h), propagation.HeaderCarrier(h)
		if got, want := ours.Get(key), theirs.Get(key); got != want {
			t.Fatalf("Get(%q) = %q, want %q", key, got, want)
		}
		if got, want := ours.Values(key), theirs.Values(key); !slices.Equal(got, want) {
			t.Fatalf("Values(%q) = %q, want %q", key, got, want)
		}
		got := propagator.Extract(context.Background(), ours)
		want := propagator.Extract(context.Background(), theirs)
		if g, w := trace.SpanContextFromContext(got), trace.SpanContextFromContext(want); !g.Equal(w) {
			t.Fatalf("span context %v, want %v", g, w)
		}
		if g, w := members(baggage.FromContext(got)), members(baggage.FromContext(want)); !slices.Equal(g, w) {
			t.Fatalf("baggage %q, want %q", g, w)
		}
	})
}

// members lists b's members as text, sorted: String's order is a map's.
func members(b baggage.Baggage) []string {
	var out []string
	for _, m := range b.Members() {
		out = append(out, m.String())
	}
	slices.Sort(out)
	return out
}
