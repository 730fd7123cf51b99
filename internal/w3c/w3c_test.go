package w3c

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/propagation"
)

// TestCarriesAgreesWithExtract checks that Extract returns its context as
// it is whenever Carries says no, and that Carries says yes for each header
// that makes Extract put something in the context.
func TestCarriesAgreesWithExtract(t *testing.T) {
	t.Parallel()
	const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	headers := []struct {
		name     string
		h        http.Header
		extracts bool // with both propagators
	}{
		{name: "none", h: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"abc"}}},
		{name: "traceparent", h: http.Header{"Traceparent": {traceparent}}, extracts: true},
		{name: "baggage", h: http.Header{"Baggage": {"k=v"}}, extracts: true},
		{name: "tracestate alone", h: http.Header{"Tracestate": {"a=b"}}},
		{name: "empty traceparent", h: http.Header{"Traceparent": {""}}},
		{name: "no values", h: http.Header{"Traceparent": {}, "Baggage": {}}},
	}
	for _, tc := range []struct {
		name                  string
		traceContext, baggage bool
	}{
		{name: "both", traceContext: true, baggage: true},
		{name: "tracecontext", traceContext: true},
		{name: "baggage", baggage: true},
		{name: "none"},
	} {
		p := New(tc.traceContext, tc.baggage)
		for _, hc := range headers {
			ctx := context.Background()
			same := p.Extract(ctx, propagation.HeaderCarrier(hc.h)) == ctx
			if !p.Carries(hc.h) && !same {
				t.Errorf("%s, headers %s: Carries says no, but Extract changed the context", tc.name, hc.name)
			}
			if tc.traceContext && tc.baggage && hc.extracts && (same || !p.Carries(hc.h)) {
				t.Errorf("%s, headers %s: Extract changed the context: %v, Carries: %v; want true, true", tc.name, hc.name, !same, p.Carries(hc.h))
			}
		}
	}
}

// TestNewInjects checks that New's propagator injects the headers of
// the propagators it composes.
func TestNewInjects(t *testing.T) {
	t.Parallel()
	want := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}).Fields()
	got := New(true, true).Fields()
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Fields() = %q, want %q", got, want)
	}
}
