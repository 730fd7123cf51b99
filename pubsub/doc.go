// Package pubsub publishes and consumes the protobuf messages a service
// defines, over a [Broker] ([mem] in memory, [natsjs] on NATS JetStream),
// through the same [connect.Interceptor] chain as the service's RPCs.
//
// A [Publisher] presents each publish to the client chain that connect
// builds from its client options, as a unary call to
// [PublishProcedure](topic) whose innermost interceptor hands the request
// message and headers to the broker; a [Subscriber] presents each delivery
// to the handler chain that connect builds from its handler options, as a
// unary call to [Procedure](topic, subscription) whose headers are the
// message's. Neither crosses connect's HTTP machinery. So an interceptor
// written once (logging, metrics, tracing, validation, auth) runs on RPCs,
// publishes and deliveries, and the headers the client chain sets (W3C
// traceparent) travel with the message. The
// chain's final error decides whether a delivery is acknowledged, retried
// after a backoff, or dead-lettered.
//
// Delivery is at least once: handlers see the message id and attempt in
// [MessageInfo], and [Idempotent] skips messages already handled.
//
// Start with [NewPublisher] and [NewSubscriber] on a broker (mem.New,
// natsjs.New). In a kit service, give them srv.ClientOptions() with
// [WithClientOptions] and srv.HandlerOptions() with [WithHandlerOptions],
// and run each subscriber with srv.Go(sub.Run). The README's section
// "Events: pubsub on the same types, through the same chain" walks through
// it:
// https://github.com/connectkit/connectkit#events-pubsub-on-the-same-types-through-the-same-chain
//
// [mem]: https://pkg.go.dev/github.com/connectkit/connectkit/pubsub/mem
// [natsjs]: https://pkg.go.dev/github.com/connectkit/connectkit/pubsub/natsjs
package pubsub
