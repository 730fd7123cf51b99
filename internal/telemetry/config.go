package telemetry

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Config is what the standard OTEL_* environment variables say about
// tracing. Its zero value is valid and sends nothing anywhere. Every field
// holds its variable's text; [Config.Validate] checks them all.
type Config struct {
	// Disabled turns tracing off whatever the other fields say:
	// OTEL_SDK_DISABLED ("true" or "false"; default false).
	Disabled string
	// Exporters says where spans go: OTEL_TRACES_EXPORTER, a
	// comma-separated list of otlp, console (JSON on standard output) and
	// none. Default none: unlike the OpenTelemetry default (otlp), nothing
	// is sent unless asked for.
	Exporters string
	// Protocol is the OTLP transport: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
	// else OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf (default) or grpc.
	Protocol string
	// Endpoint is where OTLP spans go, used as is:
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. Default: BaseEndpoint.
	Endpoint string
	// BaseEndpoint is the OTLP collector's URL, to which http/protobuf adds
	// /v1/traces: OTEL_EXPORTER_OTLP_ENDPOINT. Default
	// http://localhost:4318 (http/protobuf) or http://localhost:4317 (grpc).
	BaseEndpoint string
	// Sampler decides which traces are recorded: OTEL_TRACES_SAMPLER, one
	// of always_on, always_off, traceidratio, parentbased_always_on
	// (default), parentbased_always_off, parentbased_traceidratio.
	Sampler string
	// SamplerArg is the ratio of the traceidratio samplers, from 0 to 1:
	// OTEL_TRACES_SAMPLER_ARG. Default 1.
	SamplerArg string
	// Propagators says how trace context travels in headers:
	// OTEL_PROPAGATORS, a comma-separated list of tracecontext, baggage and
	// none. Default tracecontext,baggage.
	Propagators string
	// ServiceName names the service in every span: OTEL_SERVICE_NAME.
	// Default: service.name in ResourceAttributes, else the name given to
	// [New] with [WithServiceName], else unknown_service:<executable>.
	ServiceName string
	// ResourceAttributes describe the service in every span:
	// OTEL_RESOURCE_ATTRIBUTES, key=value pairs separated by commas, values
	// percent-encoded. Default none; service.version given here replaces
	// the one [New] takes from the binary's build info.
	ResourceAttributes string

	// tlsVariables are the names of the OTLP exporters' TLS variables that
	// are set (tlsEnv), which the exporters read themselves, for New's
	// error when the endpoint is cleartext.
	tlsVariables []string
}

// The environment variables, by field.
const (
	envDisabled           = "OTEL_SDK_DISABLED"
	envExporters          = "OTEL_TRACES_EXPORTER"
	envProtocol           = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol     = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envEndpoint           = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envBaseEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envSampler            = "OTEL_TRACES_SAMPLER"
	envSamplerArg         = "OTEL_TRACES_SAMPLER_ARG"
	envPropagators        = "OTEL_PROPAGATORS"
	envServiceName        = "OTEL_SERVICE_NAME"
	envResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
)

// tlsEnv are the variables from which the OTLP exporters read a TLS client
// configuration (a CA and a client certificate and key).
var tlsEnv = []string{
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_KEY",
	"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
}

const (
	protocolHTTP = "http/protobuf"
	protocolGRPC = "grpc"
)

// ConfigFromEnv reads the OTEL_* variables with getenv (os.Getenv in
// production) and validates them.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{
		Disabled:           getenv(envDisabled),
		Exporters:          getenv(envExporters),
		Protocol:           getenv(envTracesProtocol),
		Endpoint:           getenv(envEndpoint),
		BaseEndpoint:       getenv(envBaseEndpoint),
		Sampler:            getenv(envSampler),
		SamplerArg:         getenv(envSamplerArg),
		Propagators:        getenv(envPropagators),
		ServiceName:        getenv(envServiceName),
		ResourceAttributes: getenv(envResourceAttributes),
	}
	if cfg.Protocol == "" {
		cfg.Protocol = getenv(envProtocol)
	}
	for _, name := range tlsEnv {
		if strings.TrimSpace(getenv(name)) != "" { // as the exporters read it
			cfg.tlsVariables = append(cfg.tlsVariables, name)
		}
	}
	return cfg, cfg.Validate()
}

// Validate checks every field; its errors name the variable and its value.
func (c Config) Validate() error {
	if _, err := c.disabled(); err != nil {
		return err
	}
	if _, err := c.exporters(); err != nil {
		return err
	}
	if _, err := c.protocol(); err != nil {
		return err
	}
	if _, err := c.endpoint(); err != nil {
		return err
	}
	if _, err := c.sampler(); err != nil {
		return err
	}
	if _, err := c.propagators(); err != nil {
		return err
	}
	if _, err := parseResourceAttributes(c.ResourceAttributes); err != nil {
		return err
	}
	return nil
}

func (c Config) disabled() (bool, error) {
	switch strings.ToLower(strings.TrimSpace(c.Disabled)) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: want true or false", envDisabled, c.Disabled)
	}
}

// exporters returns the exporter names, without none.
func (c Config) exporters() ([]string, error) {
	return parseList(envExporters, c.Exporters, "exporter", "otlp", "console")
}

func (c Config) protocol() (string, error) {
	switch p := strings.TrimSpace(c.Protocol); p {
	case "", protocolHTTP:
		return protocolHTTP, nil
	case protocolGRPC:
		return protocolGRPC, nil
	default:
		return "", fmt.Errorf("%s=%q: unsupported OTLP protocol (want http/protobuf or grpc)", envTracesProtocol+" or "+envProtocol, c.Protocol)
	}
}

// The collector's URL when no variable gives one, as OpenTelemetry's
// specification has it: cleartext. The Go exporters' own defaults,
// localhost:4318 and localhost:4317, use TLS.
const (
	defaultBaseEndpointHTTP = "http://localhost:4318"
	defaultBaseEndpointGRPC = "http://localhost:4317"
)

// endpoint returns the URL spans are sent to.
func (c Config) endpoint() (string, error) {
	if c.Endpoint != "" {
		if err := checkURL(c.Endpoint); err != nil {
			return "", fmt.Errorf("%s=%q: %w", envEndpoint, c.Endpoint, err)
		}
		return c.Endpoint, nil
	}
	p, _ := c.protocol()
	base := c.BaseEndpoint
	switch {
	case base != "":
		if err := checkURL(base); err != nil {
			return "", fmt.Errorf("%s=%q: %w", envBaseEndpoint, base, err)
		}
	case p == protocolGRPC:
		base = defaultBaseEndpointGRPC
	default:
		base = defaultBaseEndpointHTTP
	}
	if p == protocolGRPC {
		return base, nil
	}
	return strings.TrimRight(base, "/") + "/v1/traces", nil
}

// cleartextWithTLS is the OTLP/HTTP exporter's error for a TLS client
// configuration (one of tlsEnv) with an http:// endpoint, which names no
// variable; it has no exported sentinel to compare with.
const cleartextWithTLS = "insecure HTTP endpoint cannot use TLS client configuration"

// cleartextError rewrites err, the OTLP/HTTP exporter's, when it is
// cleartextWithTLS, to name the TLS variables set and where the http://
// endpoint comes from, the default included.
func (c Config) cleartextError(err error) error {
	if !strings.Contains(err.Error(), cleartextWithTLS) || len(c.tlsVariables) == 0 {
		return err
	}
	var endpoint string
	switch {
	case c.Endpoint != "":
		endpoint = envEndpoint + " is an http:// URL"
	case c.BaseEndpoint != "":
		endpoint = envBaseEndpoint + " is an http:// URL"
	default:
		endpoint = fmt.Sprintf("neither %s nor %s is set, so spans go to the default %s, cleartext HTTP",
			envBaseEndpoint, envEndpoint, defaultBaseEndpointHTTP)
	}
	names := strings.Join(c.tlsVariables, " and ")
	return fmt.Errorf("%s set (a TLS client configuration), but %s, which cannot use TLS: set an https:// endpoint, or unset %s: %w",
		names, endpoint, names, err)
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want an http:// or https:// URL with a host")
	}
	return nil
}

func (c Config) sampler() (sdktrace.Sampler, error) {
	ratio := 1.0
	if c.SamplerArg != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(c.SamplerArg), 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("%s=%q: want a ratio from 0 to 1", envSamplerArg, c.SamplerArg)
		}
		ratio = r
	}
	switch name := strings.TrimSpace(c.Sampler); name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	default:
		return nil, fmt.Errorf("%s=%q: unsupported sampler (want always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio)", envSampler, c.Sampler)
	}
}

// propagators returns the propagator names, without none.
func (c Config) propagators() ([]string, error) {
	if strings.TrimSpace(c.Propagators) == "" {
		return []string{"tracecontext", "baggage"}, nil
	}
	return parseList(envPropagators, c.Propagators, "propagator", "tracecontext", "baggage")
}

// parseList returns the distinct names of the comma-separated list value,
// leaving out none; a name neither none nor allowed is an error that names
// the variable env.
func parseList(env, value, what string, allowed ...string) ([]string, error) {
	var out []string
	for _, name := range splitList(value) {
		switch {
		case name == "none", slices.Contains(out, name):
		case slices.Contains(allowed, name):
			out = append(out, name)
		default:
			return nil, fmt.Errorf("%s=%q: unsupported %s %q (want %s or none)", env, value, what, name, strings.Join(allowed, ", "))
		}
	}
	return out, nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
