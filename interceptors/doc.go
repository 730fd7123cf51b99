// Package interceptors holds the connect interceptors of production
// services: observability, validation, panic recovery, overload protection
// and, for clients, circuit breaking and retries.
//
// [Default] builds the chain of [Tracing] (OpenTelemetry, with
// connectrpc.com/otelconnect's spans), [RequestID], [Logging] (log/slog),
// [Metrics] (Prometheus, with go-grpc-prometheus names), [Recovery] and
// [Validation] (protovalidate, via connectrpc.com/validate) as a [Chain], in
// the documented order: start there. Against overload, [RateLimit] and
// [MaxInFlight] go on servers beside the chain; [CircuitBreaker]
// (sony/gobreaker) and [Retry] (gRPC's retry policies) are for clients only.
// None of these four is part of the chain. Each is a [connect.Interceptor]
// that handles unary and streaming calls and can be used alone.
//
// Package kit builds the chain for its servers and clients, configured with
// this package's options through kit.WithInterceptorOptions; use the
// interceptors directly on plain connect handlers and clients. The README's
// section "Observability: one chain for every call" shows what each piece
// logs, counts and traces:
// https://github.com/connectkit/connectkit#observability-one-chain-for-every-call
//
// Nothing here is global: loggers, registries and tracer providers are
// passed in.
package interceptors
