package kit

import (
	"github.com/prometheus/client_golang/prometheus"
)

// traceExportMetrics counts the batches of spans, and their spans, that a
// trace exporter failed to send: the batch span processor drops them, and
// the line "traces export failed" tells why. Hand-written rather than
// OpenTelemetry's own exporter metrics (otel.sdk.exporter.span.exported,
// behind OTEL_GO_X_OBSERVABILITY): those are experimental and go to an
// OpenTelemetry MeterProvider, which kit, whose metrics are Prometheus',
// does not have.
type traceExportMetrics struct {
	batches, spans *prometheus.CounterVec
}

func newTraceExportMetrics(reg prometheus.Registerer) (traceExportMetrics, error) {
	batches, err := registerOrFind(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kit_trace_export_failures_total",
		Help: "Batches of spans a trace exporter failed to send (collector down or refusing them); each batch is dropped and logged at error as \"traces export failed\".",
	}, []string{"exporter"}))
	if err != nil {
		return traceExportMetrics{}, err
	}
	spans, err := registerOrFind(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kit_trace_export_failed_spans_total",
		Help: "Spans in the batches a trace exporter failed to send, and dropped.",
	}, []string{"exporter"}))
	if err != nil {
		return traceExportMetrics{}, err
	}
	return traceExportMetrics{batches: batches, spans: spans}, nil
}

// failed counts a batch of n spans that exporter failed to send.
func (m traceExportMetrics) failed(exporter string, n int) {
	m.batches.WithLabelValues(exporter).Inc()
	m.spans.WithLabelValues(exporter).Add(float64(n))
}

// start makes each exporter's series, at 0, so that rate() and an alert on
// increase() see the first failure.
func (m traceExportMetrics) start(exporters []string) {
	for _, e := range exporters {
		m.batches.WithLabelValues(e)
		m.spans.WithLabelValues(e)
	}
}
