package pubsubtest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/pubsubbench"
	"github.com/connectkit/connectkit/pubsub"
)

// Payload sizes of the benchmarks.
var benchSizes = []struct {
	name string
	size int
}{{"100B", 100}, {"4KiB", 4096}}

// Bench runs pubsub's benchmarks on a broker. They measure publish+consume
// throughput (msgs/s and CPU µs per message) and end-to-end latency at a paced
// 5 000 messages per second (p50 and p99 in µs), for 100 B and 4 KiB messages,
// through the interceptor chain of a real kit.Server and its variants. The
// sub-benchmarks are named throughput/SIZE/CHAIN and latency/SIZE/CHAIN, SIZE
// 100B or 4KiB, and CHAIN one of chain (kit's default chain, logging every
// message to io.Discard), chain-logfile (logging to a file), chain-kitlog
// (through kit.NewLogger, to a file), chain-nosuccesslog, chain-sdktracer (a
// tracer provider that samples nothing) and nochain.
func Bench(b *testing.B, broker pubsub.Broker) {
	for _, size := range benchSizes {
		for _, chain := range pubsubbench.Chains {
			b.Run(fmt.Sprintf("throughput/%s/%s", size.name, chain.Name), func(b *testing.B) {
				benchThroughput(b, broker, size.size, chain.PubsubOptions(b))
			})
		}
	}
	for _, size := range benchSizes {
		for _, chain := range pubsubbench.Chains {
			b.Run(fmt.Sprintf("latency/%s/%s", size.name, chain.Name), func(b *testing.B) {
				benchLatency(b, broker, size.size, chain.PubsubOptions(b))
			})
		}
	}
}

var benchTopics atomic.Int64

func benchTopic() string { return fmt.Sprintf("bench.t%d", benchTopics.Add(1)) }

// benchThroughput publishes b.N messages as fast as the broker's window
// allows and consumes them.
func benchThroughput(b *testing.B, broker pubsub.Broker, size int, opts []pubsub.Option) {
	topic := benchTopic()
	count := pubsubbench.NewCountdown(b.N)
	sub, err := pubsub.NewSubscriber(broker, topic, "bench", func(context.Context, *pingv1.PingRequest) error {
		count.Handled()
		return nil
	}, append(opts, pubsub.WithDelivery(pubsubbench.Delivery))...)
	if err != nil {
		b.Fatal(err)
	}
	Start(b, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, topic, opts...)
	if err != nil {
		b.Fatal(err)
	}
	msg := &pingv1.PingRequest{Text: strings.Repeat("x", size)}
	warm := make([]*pingv1.PingRequest, count.WarmUp())
	for i := range warm {
		warm[i] = msg
	}
	if err := pub.PublishBatch(context.Background(), warm...); err != nil {
		b.Fatal(err)
	}
	count.WaitWarm(b)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), pubsubbench.StartCPU()
	futures := make(chan *pubsub.Future, 1024)
	go func() {
		for f := range futures {
			if err := f.Wait(context.Background()); err != nil {
				b.Error(err)
			}
		}
	}()
	for range b.N {
		futures <- pub.PublishAsync(context.Background(), msg)
	}
	close(futures)
	count.Wait(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	cpu.Report(b, b.N)
}

// benchLatency publishes b.N messages at pubsubbench.LatencyRate and
// measures how long each takes from the call to PublishAsync to its handler.
func benchLatency(b *testing.B, broker pubsub.Broker, size int, opts []pubsub.Option) {
	topic := benchTopic()
	lat := pubsubbench.NewLatencies(b.N)
	sub, err := pubsub.NewSubscriber(broker, topic, "bench", func(_ context.Context, m *pingv1.PingRequest) error {
		lat.Observe(m.GetNumber())
		return nil
	}, append(opts, pubsub.WithDelivery(pubsubbench.Delivery))...)
	if err != nil {
		b.Fatal(err)
	}
	Start(b, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, topic, opts...)
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("x", size)
	futures := make(chan *pubsub.Future, 1024)
	go func() {
		for f := range futures {
			if err := f.Wait(context.Background()); err != nil {
				b.Error(err)
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	pubsubbench.Paced(b.N, pubsubbench.LatencyRate, func(sentAt int64) {
		futures <- pub.PublishAsync(context.Background(), &pingv1.PingRequest{Number: sentAt, Text: text})
	})
	close(futures)
	lat.Wait(b)
	b.StopTimer()
	lat.Report(b)
}
