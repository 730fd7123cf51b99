package interceptors

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
)

// headerCarrier is propagation.HeaderCarrier without an allocation per
// lookup. http.Header.Get canonicalizes its key, and since Traceparent,
// Tracestate and Baggage are not among the canonical forms net/textproto
// keeps interned, every lookup of them allocated a new string: two per
// call served, even when the caller sent no trace context.
type headerCarrier http.Header

var _ propagation.ValuesGetter = headerCarrier{}

func (h headerCarrier) Get(key string) string {
	if v := h.Values(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h headerCarrier) Values(key string) []string { return http.Header(h)[canonicalKey(key)] }

func (h headerCarrier) Set(key, value string) { http.Header(h)[canonicalKey(key)] = []string{value} }

func (h headerCarrier) Keys() []string { return propagation.HeaderCarrier(h).Keys() }

// canonicalKey is http.CanonicalHeaderKey, without allocating for the W3C
// Trace Context and Baggage headers.
func canonicalKey(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(key)
}
