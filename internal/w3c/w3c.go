// Package w3c builds the trace context propagator that kit and package
// interceptors use by default, W3C Trace Context and Baggage, as a type
// that tells which request headers its Extract reads: a server can then
// skip Extract, ~1 000 instructions a call for two propagators that find
// nothing, when none of them came (BENCHMARKS.md 1.28).
package w3c

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
)

// Propagator is a propagation.TextMapPropagator whose Extract returns its
// context as it is when none of the headers in Reads is in the carrier.
type Propagator struct {
	propagation.TextMapPropagator
	// Reads holds the canonical keys of the headers without which Extract
	// extracts nothing.
	Reads []string
}

// New returns W3C Trace Context (traceparent, tracestate), Baggage
// (baggage), or both, composed in that order as
// propagation.NewCompositeTextMapPropagator composes them; with neither,
// a propagator that does nothing.
func New(traceContext, baggage bool) *Propagator {
	var p Propagator
	var ps []propagation.TextMapPropagator
	if traceContext {
		// A tracestate without a valid traceparent is not read.
		ps = append(ps, propagation.TraceContext{})
		p.Reads = append(p.Reads, "Traceparent")
	}
	if baggage {
		ps = append(ps, propagation.Baggage{})
		p.Reads = append(p.Reads, "Baggage")
	}
	p.TextMapPropagator = propagation.NewCompositeTextMapPropagator(ps...)
	return &p
}

// Carries reports whether h holds one of the headers in Reads: when it
// does not, Extract with h as its carrier returns its context as it is.
func (p *Propagator) Carries(h http.Header) bool {
	for _, key := range p.Reads {
		if len(h[key]) > 0 {
			return true
		}
	}
	return false
}
