package interceptors

// Option configures [Default]. Every [LoggingOption], [MetricsOption] and
// [TracingOption] is also an Option: given to Default, it configures that
// interceptor of the chain.
type Option interface {
	applyToChain(cfg *chainConfig)
}

// LoggingOption configures [Logging].
type LoggingOption interface {
	Option
	applyToLogging(cfg *loggingConfig)
}

// MetricsOption configures [Metrics].
type MetricsOption interface {
	Option
	applyToMetrics(cfg *metricsConfig)
}

// TracingOption configures [Tracing].
type TracingOption interface {
	Option
	applyToTracing(cfg *tracingConfig)
}

type chainOption func(*chainConfig)

func (o chainOption) applyToChain(c *chainConfig) { o(c) }

type loggingOption func(*loggingConfig)

func (o loggingOption) applyToLogging(c *loggingConfig) { o(c) }
func (o loggingOption) applyToChain(c *chainConfig)     { c.logging = append(c.logging, o) }

type metricsOption func(*metricsConfig)

func (o metricsOption) applyToMetrics(c *metricsConfig) { o(c) }
func (o metricsOption) applyToChain(c *chainConfig)     { c.metrics = append(c.metrics, o) }

type tracingOption func(*tracingConfig)

func (o tracingOption) applyToTracing(c *tracingConfig) { o(c) }
func (o tracingOption) applyToChain(c *chainConfig)     { c.tracing = append(c.tracing, o) }
