package pubsub_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/pubsubbench"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
)

// BenchmarkDeliveryDesign measures what presenting one delivery to the
// interceptor chain costs: as a unary call to the chain connect builds
// (pubsub's design), as a streaming call on a hand-made StreamingHandlerConn (lighter,
// but UnaryInterceptorFunc interceptors never see it), and with no chain.
func BenchmarkDeliveryDesign(b *testing.B) {
	payload, err := proto.Marshal(&pingv1.PingRequest{Number: 42, Text: string(make([]byte, 80))})
	if err != nil {
		b.Fatal(err)
	}
	handler := func(context.Context, *pingv1.PingRequest) error { return nil }
	for _, chain := range pubsubbench.Chains {
		if chain.LogFile {
			continue
		}
		opts := chain.PubsubOptions(b)
		// The streaming alternative needs the interceptors themselves: the
		// same default chain, built as kit builds it (no-op tracer provider
		// unless the variant brings one), without kit's deadlines.
		var interceptorList []connect.Interceptor
		if !chain.None {
			chainOpts := []interceptors.Option{interceptors.WithTracerProvider(noop.NewTracerProvider())}
			switch chain.Name {
			case "chain-nosuccesslog":
				chainOpts = append(chainOpts, interceptors.WithoutMessageSuccessLogs())
			case "chain-sdktracer":
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
				chainOpts = append(chainOpts, interceptors.WithTracerProvider(tp))
			}
			logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
			c, err := interceptors.Default(logger, prometheus.NewRegistry(), chainOpts...)
			if err != nil {
				b.Fatal(err)
			}
			interceptorList = c.Server()
		}
		b.Run("unary/"+chain.Name, func(b *testing.B) {
			sub, err := pubsub.NewSubscriber(mem.New(), "bench", "s", handler, opts...)
			if err != nil {
				b.Fatal(err)
			}
			msg := &pubsub.Message{ID: "id", Topic: "bench", Header: http.Header{
				"Content-Type": {"application/proto"}, "Pubsub-Type": {"connectkit.ping.v1.PingRequest"},
				"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
			}, Data: payload}
			b.ReportAllocs()
			for b.Loop() {
				if err := sub.InvokeForBench(context.Background(), msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("streaming/"+chain.Name, func(b *testing.B) {
			spec := connect.Spec{StreamType: connect.StreamTypeUnary, Procedure: "/bench/s"}
			next := connect.StreamingHandlerFunc(func(ctx context.Context, conn connect.StreamingHandlerConn) error {
				var msg pingv1.PingRequest
				if err := conn.Receive(&msg); err != nil {
					return err
				}
				return handler(ctx, &msg)
			})
			for i := len(interceptorList) - 1; i >= 0; i-- {
				next = interceptorList[i].WrapStreamingHandler(next)
			}
			header := http.Header{
				"Content-Type": {"application/proto"}, "Pubsub-Type": {"connectkit.ping.v1.PingRequest"},
				"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
			}
			b.ReportAllocs()
			for b.Loop() {
				conn := &messageConn{spec: spec, header: header, data: payload}
				if err := next(context.Background(), conn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var msg pingv1.PingRequest
			if err := proto.Unmarshal(payload, &msg); err != nil {
				b.Fatal(err)
			}
			if err := handler(context.Background(), &msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// messageConn is the lighter alternative's StreamingHandlerConn: one message
// received, nothing sent.
type messageConn struct {
	spec     connect.Spec
	header   http.Header
	data     []byte
	received bool
	resp     http.Header
}

func (c *messageConn) Spec() connect.Spec { return c.spec }
func (c *messageConn) Peer() connect.Peer { return connect.Peer{Protocol: connect.ProtocolConnect} }
func (c *messageConn) Receive(m any) error {
	if c.received {
		return io.EOF
	}
	c.received = true
	return proto.Unmarshal(c.data, m.(proto.Message))
}
func (c *messageConn) RequestHeader() http.Header { return c.header }
func (c *messageConn) Send(any) error             { return nil }
func (c *messageConn) ResponseHeader() http.Header {
	if c.resp == nil {
		c.resp = make(http.Header)
	}
	return c.resp
}
func (c *messageConn) ResponseTrailer() http.Header { return c.ResponseHeader() }

// BenchmarkPublishPath measures what one publish costs pubsub and the chain,
// without a broker: PublishAsync to a broker that confirms at once.
func BenchmarkPublishPath(b *testing.B) {
	msg := &pingv1.PingRequest{Number: 42, Text: string(make([]byte, 80))}
	for _, chain := range pubsubbench.Chains {
		if chain.LogFile {
			continue
		}
		b.Run(chain.Name, func(b *testing.B) {
			pub, err := pubsub.NewPublisher[pingv1.PingRequest](nullBroker{mem.New()}, "bench", chain.PubsubOptions(b)...)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := pub.PublishAsync(context.Background(), msg).Wait(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// nullBroker confirms every publish at once and stores nothing.
type nullBroker struct{ *mem.Broker }

func (nullBroker) Publish(context.Context, *pubsub.Message) (pubsub.Confirmation, error) {
	return confirmed{}, nil
}

type confirmed struct{}

func (confirmed) Wait(context.Context) error { return nil }
