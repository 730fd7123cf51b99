package interceptors

import (
	"context"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/w3c"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// lookupCounter counts the lookups that reach it: those of keys that no
// context above it holds.
type lookupCounter struct {
	context.Context
	lookups int
}

func (c *lookupCounter) Value(key any) any {
	c.lookups++
	return c.Context.Value(key)
}

// extractCounter counts the calls of its Extract.
type extractCounter struct {
	propagation.TextMapPropagator
	extracts int
}

func (p *extractCounter) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	p.extracts++
	return p.TextMapPropagator.Extract(ctx, carrier)
}

// TestExtractRemote checks that a server call without trace context
// headers costs neither the default propagator's Extract nor a lookup in
// its context, and that a caller's context is extracted unless an outer
// span is there.
func TestExtractRemote(t *testing.T) {
	t.Parallel()
	const (
		remoteTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		outerTrace  = "0af7651916cd43dd8448eb211c80319c"
	)
	withTraceparent := headerCarrier{"Traceparent": {"00-" + remoteTrace + "-00f067aa0ba902b7-01"}}
	spy := &extractCounter{TextMapPropagator: propagation.TraceContext{}}
	p := &w3c.Propagator{TextMapPropagator: spy, Reads: []string{"Traceparent"}}

	c := &lookupCounter{Context: context.Background()}
	if got := extractRemote(c, p, headerCarrier{"Tracestate": {"a=b"}}); got != context.Context(c) || spy.extracts != 0 || c.lookups != 0 {
		t.Errorf("without a traceparent: extractRemote returned %v after %d Extract calls and %d lookups in the context; want the context after none",
			got, spy.extracts, c.lookups)
	}
	got := trace.SpanContextFromContext(extractRemote(context.Background(), p, withTraceparent))
	if spy.extracts != 1 || !got.IsRemote() || got.TraceID().String() != remoteTrace {
		t.Errorf("with a traceparent: %d Extract calls, span context %v; want 1, the caller's", spy.extracts, got)
	}

	outerID, err := trace.TraceIDFromHex(outerTrace)
	if err != nil {
		t.Fatal(err)
	}
	outer := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: outerID, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}))
	for _, p := range []propagation.TextMapPropagator{w3c.New(true, true), propagation.TraceContext{}} {
		if got := trace.SpanContextFromContext(extractRemote(outer, p, withTraceparent)); got.TraceID().String() != outerTrace {
			t.Errorf("%T, under an outer span: span context %v; want the outer span's", p, got)
		}
	}
}

// TestLineReusesMetricsSpanLookup checks that the line of a call whose
// context Metrics found without a span does not walk the context for one
// again, and that a context with one, remote or local, sampled or not,
// still gives the line its ids.
func TestLineReusesMetricsSpanLookup(t *testing.T) {
	t.Parallel()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h"})

	base := &lookupCounter{Context: context.Background()}
	lc := &logContext{Context: base}
	observeSince(lc, h, time.Now())
	walks := base.lookups
	if walks == 0 {
		t.Fatal("observeSince did not look for a span")
	}
	if _, _, ok := traceIDs(lc); ok {
		t.Error("traceIDs found a span in a context without one")
	}
	if base.lookups != walks {
		t.Errorf("traceIDs walked the context %d more times after Metrics found no span in it", base.lookups-walks)
	}

	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	for _, tc := range []struct {
		name           string
		remote, sample bool
	}{
		{name: "remote", remote: true},
		{name: "remote sampled", remote: true, sample: true},
		{name: "local"},
		{name: "local sampled", sample: true},
	} {
		cfg := trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, Remote: tc.remote}
		if tc.sample {
			cfg.TraceFlags = trace.FlagsSampled
		}
		lc := &logContext{Context: trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(cfg))}
		observeSince(lc, h, time.Now())
		if gotTrace, gotSpan, ok := traceIDs(lc); !ok || gotTrace != traceID.String() || gotSpan != spanID.String() {
			t.Errorf("%s: traceIDs after observeSince = %q, %q, %v; want %s, %s", tc.name, gotTrace, gotSpan, ok, traceID, spanID)
		}
	}
}
