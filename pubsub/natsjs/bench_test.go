package natsjs_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/pubsubbench"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkJetStream runs pubsub's benchmarks on an embedded server with file
// storage, and, as their reference, the same measures of a bare
// nats.go/jetstream loop on the same server: asynchronous publishes within a
// window of 4096 unacknowledged ones, a durable pull consumer (natsjs's
// pull expiry and heartbeat), one ack per message.
func BenchmarkJetStream(b *testing.B) {
	broker, err := natsjs.New(context.Background(), natsjs.Config{DataDir: b.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = broker.Close() })
	nc, err := nats.Connect(broker.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(natsjs.DefaultPublishWindow))
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{100, 4096} {
		b.Run(fmt.Sprintf("bare/throughput/%s", sizeName(size)), func(b *testing.B) { bareThroughput(b, js, size, false) })
		b.Run(fmt.Sprintf("bare/latency/%s", sizeName(size)), func(b *testing.B) { bareLatency(b, js, size) })
		b.Run(fmt.Sprintf("bare-headers/throughput/%s", sizeName(size)), func(b *testing.B) { bareThroughput(b, js, size, true) })
	}
	b.Run("pubsub", func(b *testing.B) { pubsubtest.Bench(b, broker) })
	inproc, err := natsjs.New(context.Background(), natsjs.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = inproc.Close() })
	b.Run("pubsub-inprocess", func(b *testing.B) { pubsubtest.Bench(b, inproc) })
}

func sizeName(size int) string {
	if size >= 1024 {
		return fmt.Sprintf("%dKiB", size/1024)
	}
	return fmt.Sprintf("%dB", size)
}

// barePull gives the bare loop's consumer natsjs's default pull expiry and
// heartbeat, so that a stall of nats.go's Consume (natsjs.Config.PullExpiry)
// lasts as long in the reference as in pubsub: 2 s, not nats.go's 30 s.
// Both only act while a pull request waits with nothing to deliver.
var barePull = []jetstream.PullConsumeOpt{
	jetstream.PullExpiry(natsjs.DefaultPullExpiry),
	jetstream.PullHeartbeat(time.Second),
}

var bareStreams atomic.Int64

// bareConsumer creates a stream and a durable consumer for one benchmark.
func bareConsumer(b *testing.B, js jetstream.JetStream) (string, jetstream.Consumer) {
	n := bareStreams.Add(1)
	subject := fmt.Sprintf("bare.t%d", n)
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: fmt.Sprintf("bare_t%d", n), Subjects: []string{subject}, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	return subject, cons
}

// bareThroughput measures the bare loop; with headers, each message carries
// headers like those of a message published through the default chain
// outside any call, as pubsub's benchmarks publish (content type, message
// type, message id: such a publish's request id is its message id, which
// it does not send), and the consumer reads them, to measure what headers
// cost JetStream and the client. A message published under a call carries
// one header more, X-Request-Id (36 bytes). The id is lower case, as
// pubsub's are: an "N" in it would cost the server's header scans ~1 100
// instructions a message (BENCHMARKS.md section 3).
func bareThroughput(b *testing.B, js jetstream.JetStream, size int, headers bool) {
	subject, cons := bareConsumer(b, js)
	count := pubsubbench.NewCountdown(b.N)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if headers && m.Headers().Get("Pubsub-Message-Id") == "" {
			b.Error("message without its id header")
		}
		_ = m.Ack()
		count.Handled()
	}, barePull...)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	data := make([]byte, size)
	publish := func(i int) {
		msg := &nats.Msg{Subject: subject, Data: data}
		if headers {
			msg.Header = nats.Header{
				"Content-Type":      {"application/proto"},
				"Pubsub-Type":       {"connectkit.ping.v1.PingRequest"},
				"Pubsub-Message-Id": {"r6tvbhxklz4m2qja" + strconv.FormatInt(int64(i), 36)},
			}
		}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range count.WarmUp() {
		publish(-1 - i)
	}
	<-js.PublishAsyncComplete()
	count.WaitWarm(b)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), pubsubbench.StartCPU()
	for i := range b.N {
		publish(i)
	}
	<-js.PublishAsyncComplete()
	count.Wait(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	cpu.Report(b, b.N)
}

func bareLatency(b *testing.B, js jetstream.JetStream, size int) {
	subject, cons := bareConsumer(b, js)
	lat := pubsubbench.NewLatencies(b.N)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		lat.Observe(int64(binary.BigEndian.Uint64(m.Data())))
	}, barePull...)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	pubsubbench.Paced(b.N, pubsubbench.LatencyRate, func(sentAt int64) {
		data := make([]byte, size)
		binary.BigEndian.PutUint64(data, uint64(sentAt))
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data}, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	})
	lat.Wait(b)
	b.StopTimer()
	lat.Report(b)
}
