package pubsubtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Payload sizes of the benchmarks.
var benchSizes = []struct {
	name string
	size int
}{{"100B", 100}, {"4KiB", 4096}}

// benchChains are the interceptor chains of the benchmarks.
var benchChains = []struct {
	name  string
	level slog.Level // of the logging interceptor
	none  bool
}{
	{name: "chain", level: slog.LevelInfo},
	{name: "chain-nosuccesslog", level: slog.LevelWarn},
	{name: "nochain", none: true},
}

// Bench runs pubsub's benchmarks on a broker: publish+consume throughput
// (msgs/s) and end-to-end latency at a paced rate (p50 and p99 in µs), for
// 100 B and 4 KiB messages, through the [ApproxChain] chain with every call
// logged, with successes not logged, and without a chain.
func Bench(b *testing.B, broker pubsub.Broker) {
	for _, size := range benchSizes {
		for _, chain := range benchChains {
			b.Run(fmt.Sprintf("throughput/%s/%s", size.name, chain.name), func(b *testing.B) {
				benchThroughput(b, broker, size.size, chainOptions(b, chain.level, chain.none))
			})
		}
	}
	for _, size := range benchSizes {
		for _, chain := range benchChains {
			b.Run(fmt.Sprintf("latency/%s/%s", size.name, chain.name), func(b *testing.B) {
				benchLatency(b, broker, size.size, chainOptions(b, chain.level, chain.none))
			})
		}
	}
}

// BenchDelivery is the subscriber configuration of the benchmarks.
var BenchDelivery = pubsub.DeliveryConfig{Concurrency: 16, Prefetch: 512}

// LatencyRate is the paced rate of the latency benchmarks, in messages per
// second.
const LatencyRate = 5000

var benchTopics atomic.Int64

func benchTopic() string { return fmt.Sprintf("bench.t%d", benchTopics.Add(1)) }

func chainOptions(tb testing.TB, level slog.Level, none bool) []pubsub.Option {
	if none {
		return nil
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	interceptors, err := ApproxChain(logger, prometheus.NewRegistry(), tp)
	if err != nil {
		tb.Fatal(err)
	}
	chain := connect.WithInterceptors(interceptors...)
	return []pubsub.Option{
		pubsub.WithClientOptions(chain), pubsub.WithHandlerOptions(chain),
		pubsub.WithoutValidation(), // the chain validates
		pubsub.WithRegistry(prometheus.NewRegistry()), pubsub.WithLogger(logger),
	}
}

// benchThroughput publishes b.N messages as fast as the broker's window
// allows and consumes them.
func benchThroughput(b *testing.B, broker pubsub.Broker, size int, opts []pubsub.Option) {
	topic := benchTopic()
	var handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	sub, err := pubsub.NewSubscriber(broker, topic, "bench", func(context.Context, *pingv1.PingRequest) error {
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	}, append(opts, pubsub.WithDelivery(BenchDelivery))...)
	if err != nil {
		b.Fatal(err)
	}
	Start(b, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, topic, opts...)
	if err != nil {
		b.Fatal(err)
	}
	msg := &pingv1.PingRequest{Text: strings.Repeat("x", size)}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), StartCPU()
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
	select {
	case <-done:
	case <-time.After(waitTimeout):
		b.Fatalf("handled %d of %d messages", handled.Load(), n)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	cpu.Report(b, b.N)
}

// benchLatency publishes b.N messages at LatencyRate and measures how long
// each takes from the call to PublishAsync to its handler.
func benchLatency(b *testing.B, broker pubsub.Broker, size int, opts []pubsub.Option) {
	topic := benchTopic()
	lat := NewLatencies(b.N)
	sub, err := pubsub.NewSubscriber(broker, topic, "bench", func(_ context.Context, m *pingv1.PingRequest) error {
		lat.Observe(m.GetNumber())
		return nil
	}, append(opts, pubsub.WithDelivery(BenchDelivery))...)
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
	Paced(b.N, LatencyRate, func(sentAt int64) {
		futures <- pub.PublishAsync(context.Background(), &pingv1.PingRequest{Number: sentAt, Text: text})
	})
	close(futures)
	lat.Wait(b)
	b.StopTimer()
	lat.Report(b)
}

// Paced calls send n times at rate calls per second, with the time of each
// call in Unix nanoseconds.
func Paced(n, rate int, send func(sentAt int64)) {
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for range n {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		send(time.Now().UnixNano())
	}
}

// Latencies collects end-to-end latencies of a benchmark.
type Latencies struct {
	mu   sync.Mutex
	d    []time.Duration
	n    int
	done chan struct{}
}

// NewLatencies returns a collector of n latencies.
func NewLatencies(n int) *Latencies {
	return &Latencies{d: make([]time.Duration, 0, n), n: n, done: make(chan struct{})}
}

// Observe records the latency of a message sent at sentAt (Unix
// nanoseconds).
func (l *Latencies) Observe(sentAt int64) {
	d := time.Duration(time.Now().UnixNano() - sentAt)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d = append(l.d, d)
	if len(l.d) == l.n {
		close(l.done)
	}
}

// Wait waits until every latency was observed.
func (l *Latencies) Wait(b *testing.B) {
	select {
	case <-l.done:
	case <-time.After(waitTimeout):
		l.mu.Lock()
		defer l.mu.Unlock()
		b.Fatalf("received %d of %d messages", len(l.d), l.n)
	}
}

// Report reports the median and 99th percentile, in µs.
func (l *Latencies) Report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	at := func(q float64) float64 { return float64(l.d[int(q*float64(len(l.d)-1))]) / float64(time.Microsecond) }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

// CPUMeter measures the CPU time the process spends (user and system, all
// threads, the embedded server's included) over a benchmark: unlike
// throughput, it hardly depends on what else the machine runs.
type CPUMeter struct{ start time.Duration }

// StartCPU starts a CPUMeter.
func StartCPU() CPUMeter { return CPUMeter{start: cpuTime()} }

// Report reports the CPU time per message, in µs.
func (m CPUMeter) Report(b *testing.B, messages int) {
	b.ReportMetric(float64(cpuTime()-m.start)/float64(time.Microsecond)/float64(messages), "cpu-µs/msg")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
