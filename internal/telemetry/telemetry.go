// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables ([ConfigFromEnv]), for kit to pass to
// [github.com/connectkit/connectkit/interceptors.Tracing]. Nothing is global:
// [New] returns a [Provider] and never calls otel.SetTracerProvider.
// [MarkHTTP1] marks the client spans of calls that kit's HTTP client sent
// over HTTP/1.1.
//
// Only tracing is set up here: metrics are Prometheus, logs are slog.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/connectkit/connectkit/internal/w3c"
)

// Provider is the tracing set up by [New].
type Provider struct {
	tracerProvider trace.TracerProvider
	propagator     propagation.TextMapPropagator
	shutdown       func(context.Context) error
	exporting      bool
	unsent         []unsentCount // one per exporter, in the configured order
}

// unsentCount counts the spans of the batches one exporter failed to send.
type unsentCount struct {
	exporter string
	spans    atomic.Int64
}

// Unsent is how many spans one exporter failed to send.
type Unsent struct {
	Exporter string // otlp, console
	Spans    int64
}

// TracerProvider returns the provider of spans. When no exporter is set up
// (the default), it is a no-op provider: spans cost nothing and are not
// recorded, while the trace context of incoming calls still reaches logs
// and outgoing calls unchanged.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tracerProvider }

// Propagator returns how trace context travels in headers.
func (p *Provider) Propagator() propagation.TextMapPropagator { return p.propagator }

// Exporting reports whether spans are sent anywhere.
func (p *Provider) Exporting() bool { return p.exporting }

// Shutdown sends the spans not yet exported and stops the exporters; call
// it once, when the process stops, with a deadline.
func (p *Provider) Shutdown(ctx context.Context) error { return p.shutdown(ctx) }

// Unsent returns, for each exporter in the configured order, how many
// spans it has failed to send since the provider was made (each batch
// logged as it failed): the difference over [Provider.Shutdown] is what
// the last flush lost. Every exporter sends its own copy of each span, so
// a span that two exporters failed to send counts once for each: the
// counts are not to be added up. Nil when no exporter is set up or when
// [New] was given no [WithLogger] (the failures are not seen then).
func (p *Provider) Unsent() []Unsent {
	var out []Unsent
	for i := range p.unsent {
		out = append(out, Unsent{Exporter: p.unsent[i].exporter, Spans: p.unsent[i].spans.Load()})
	}
	return out
}

// Option configures [New].
type Option interface{ apply(o *options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	serviceName string
	console     io.Writer
	logger      *slog.Logger                     // nil: export errors go to otel.Handle
	failed      func(exporter string, spans int) // nil: failures only logged
	buildInfo   func() (*debug.BuildInfo, bool)  // debug.ReadBuildInfo but in tests
}

// WithServiceName sets the service name used when neither
// OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES gives one. Default
// unknown_service:<executable>, as OpenTelemetry does.
func WithServiceName(name string) Option {
	return optionFunc(func(o *options) { o.serviceName = name })
}

// WithConsoleWriter sets where the console exporter writes. Default
// os.Stdout.
func WithConsoleWriter(w io.Writer) Option {
	return optionFunc(func(o *options) { o.console = w })
}

// WithLogger logs each batch of spans that an exporter could not send (no
// collector listening, say) at error with logger, as one line of its own
// format, rather than hand the error to OpenTelemetry's global error
// handler, which prints it with the standard library's log. Default: the
// global handler.
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = logger })
}

// WithExportFailures calls failed, with the exporter's name (otlp,
// console) and the batch's size, for each batch of spans an exporter could
// not send, as [WithLogger] logs it; it has no effect without WithLogger.
// kit counts them in its Prometheus metrics with it.
func WithExportFailures(failed func(exporter string, spans int)) Option {
	return optionFunc(func(o *options) { o.failed = failed })
}

// New sets tracing up as cfg says. OTLP exporters also read the rest of
// their configuration from the process environment, as OpenTelemetry
// defines it (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION,
// _CERTIFICATE…), and the batch span processor reads OTEL_BSP_*. Building
// an exporter does not connect to anything.
func New(ctx context.Context, cfg Config, opts ...Option) (*Provider, error) {
	o := options{console: os.Stdout, buildInfo: debug.ReadBuildInfo}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	names, _ := cfg.propagators()
	p := &Provider{propagator: newPropagator(names), shutdown: func(context.Context) error { return nil }}
	disabled, _ := cfg.disabled()
	exporters, _ := cfg.exporters()
	if disabled || len(exporters) == 0 {
		p.tracerProvider = noop.NewTracerProvider()
		return p, nil
	}
	res, err := newResource(ctx, cfg, o.serviceName, buildVersion(o.buildInfo()))
	if err != nil {
		return nil, err
	}
	sampler, _ := cfg.sampler()
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	if o.logger != nil {
		p.unsent = make([]unsentCount, len(exporters))
	}
	for i, name := range exporters {
		exp, err := newExporter(ctx, name, cfg, o)
		if err != nil {
			return nil, fmt.Errorf("failed to create the %s trace exporter: %w", name, err)
		}
		if o.logger != nil {
			p.unsent[i].exporter = name
			exp = loggedExporter{SpanExporter: exp, logger: o.logger, name: name, unsent: &p.unsent[i].spans, failed: o.failed}
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	p.tracerProvider, p.shutdown, p.exporting = tp, tp.Shutdown, true
	return p, nil
}

func newExporter(ctx context.Context, name string, cfg Config, o options) (sdktrace.SpanExporter, error) {
	if name == "console" {
		return stdouttrace.New(stdouttrace.WithWriter(o.console))
	}
	protocol, _ := cfg.protocol()
	endpoint, _ := cfg.endpoint()
	if protocol == protocolGRPC {
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(endpoint))
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, cfg.cleartextError(err)
	}
	return exp, nil
}

// loggedExporter logs the batches its exporter fails to send, and reports
// them sent to the batch span processor, which would otherwise hand the
// error to otel.Handle: the processor drops a failed batch either way.
type loggedExporter struct {
	sdktrace.SpanExporter
	logger *slog.Logger
	name   string // of the exporter: otlp, console
	unsent *atomic.Int64
	failed func(exporter string, spans int) // or nil
}

// ExportSpans implements sdktrace.SpanExporter.
func (e loggedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil {
		return nil
	}
	lost := len(spans)
	if rejected, ok := partialSuccess(err); ok {
		// The collector took the batch, but for the spans it rejected.
		lost = int(min(max(rejected, 0), int64(lost)))
		if lost == 0 { // a warning: every span was kept
			e.logger.LogAttrs(ctx, slog.LevelWarn, "traces exported with a warning from the collector",
				slog.String("exporter", e.name), slog.Int("spans", len(spans)), slog.String("error", clip(err.Error())))
			return nil
		}
	}
	e.unsent.Add(int64(lost))
	if e.failed != nil {
		e.failed(e.name, lost)
	}
	e.logger.LogAttrs(ctx, slog.LevelError, "traces export failed",
		slog.String("exporter", e.name), slog.Int("spans", lost), slog.String("error", clip(err.Error())))
	return nil
}

// partialSuccess reports whether err, an OTLP exporter's, says only that
// the collector took the batch but rejected some of its spans (a partial
// success, OTLP's ExportTracePartialSuccess), and how many; none is a
// warning the collector sent with a batch it kept whole. The exporters
// return such an answer as an error of a type in their internal package,
// PartialSuccess{ErrorMessage, RejectedItems, RejectedKind}, which only
// reflection reaches (errors.As needs the type itself): read by hand, by
// its type's name and field rather than by its text, so that a
// collector's warning is not counted as a lost batch.
func partialSuccess(err error) (rejected int64, ok bool) {
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		errs := u.Unwrap()
		for _, e := range errs {
			n, ok := partialSuccess(e)
			if !ok {
				return 0, false
			}
			rejected += n
		}
		return rejected, len(errs) > 0
	case interface{ Unwrap() error }:
		return partialSuccess(u.Unwrap())
	}
	v := reflect.ValueOf(err)
	if v.Kind() != reflect.Struct || v.Type().Name() != "PartialSuccess" ||
		!strings.HasPrefix(v.Type().PkgPath(), "go.opentelemetry.io/otel/exporters/otlp/") {
		return 0, false
	}
	n := v.FieldByName("RejectedItems")
	if n.Kind() != reflect.Int64 {
		return 0, false
	}
	return n.Int(), true
}

// maxExportErrorBytes bounds the text of an export's error in its line:
// the OTLP/HTTP exporter puts in it the body of the collector's error
// answer, up to 4 MiB (an endpoint that is no collector answers a whole
// HTML page), once for every batch.
const maxExportErrorBytes = 1024

// clip returns the first maxExportErrorBytes of msg, cut between UTF-8
// characters, followed by how many bytes it left out.
func clip(msg string) string {
	if len(msg) <= maxExportErrorBytes {
		return msg
	}
	n := maxExportErrorBytes
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return fmt.Sprintf("%s… (%d bytes left out)", msg[:n], len(msg)-n)
}

// newPropagator composes the propagators names, which propagators()
// checked, in W3C's order: Trace Context, then Baggage.
func newPropagator(names []string) propagation.TextMapPropagator {
	return w3c.New(slices.Contains(names, "tracecontext"), slices.Contains(names, "baggage"))
}

// newResource describes the service. It does not use resource.WithFromEnv,
// which reads the process environment rather than the Config. version is
// the service.version used when ResourceAttributes gives none ("" for
// none).
func newResource(ctx context.Context, cfg Config, fallbackName, version string) (*resource.Resource, error) {
	attrs, err := parseResourceAttributes(cfg.ResourceAttributes)
	if err != nil {
		return nil, err
	}
	if version != "" && !hasKey(attrs, semconv.ServiceVersionKey) {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	name := strings.TrimSpace(cfg.ServiceName)
	if name == "" && !hasKey(attrs, semconv.ServiceNameKey) {
		name = fallbackName
		if name == "" {
			name = "unknown_service:" + filepath.Base(os.Args[0])
		}
	}
	if name != "" {
		attrs = append(attrs, semconv.ServiceName(name)) // later attributes win
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(attrs...),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("failed to describe the service: %w", err)
	}
	return res, nil
}

// buildVersion returns the binary's version as its build info gives it:
// the main module's version (a tag, or a pseudo-version that go build
// stamps from the VCS since Go 1.24), else, when go build did not know it
// ("(devel)"), the VCS revision with +dirty when the tree had changes;
// "" when neither is known (go run, of a package as of a file, a test
// binary, -buildvcs=false).
func buildVersion(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return ""
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision != "" && modified == "true" {
		revision += "+dirty"
	}
	return revision
}

func hasKey(attrs []attribute.KeyValue, key attribute.Key) bool {
	for _, kv := range attrs {
		if kv.Key == key {
			return true
		}
	}
	return false
}

// parseResourceAttributes parses key=value,key=value with percent-encoded
// values, as OpenTelemetry defines OTEL_RESOURCE_ATTRIBUTES.
func parseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var attrs []attribute.KeyValue
	for _, item := range splitList(s) {
		key, value, ok := strings.Cut(item, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return nil, fmt.Errorf("%s=%q: %q is not key=value", envResourceAttributes, s, item)
		}
		decoded, err := url.PathUnescape(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("%s=%q: the value of %s is not percent-encoded: %w", envResourceAttributes, s, key, err)
		}
		attrs = append(attrs, attribute.String(key, decoded))
	}
	return attrs, nil
}
