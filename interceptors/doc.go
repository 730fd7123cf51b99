// Package interceptors gives connect handlers and clients production
// observability: [Tracing] (OpenTelemetry, with connectrpc.com/otelconnect's spans),
// [RequestID], [Logging] (log/slog), [Metrics] (Prometheus, with
// go-grpc-prometheus names), [Recovery] and [Validation] (protovalidate, via
// connectrpc.com/validate), and against overload [RateLimit] and
// [MaxInFlight]. Each is a [connect.Interceptor] that handles
// unary and streaming calls, on servers and clients, and can be used alone;
// [Default] builds them all as a [Chain] in the documented order.
// [CircuitBreaker] (sony/gobreaker) and [Retry] (gRPC's retry policies) are for
// clients only, and not part of it.
//
// Nothing here is global: loggers, registries and tracer providers are
// passed in.
package interceptors
