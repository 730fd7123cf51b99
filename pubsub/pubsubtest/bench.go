package pubsubtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/pubsub"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Payload sizes of the benchmarks.
var benchSizes = []struct {
	name string
	size int
}{{"100B", 100}, {"4KiB", 4096}}

// BenchChain is an interceptor chain of the benchmarks.
type BenchChain struct {
	// Name names the chain in the benchmark's name.
	Name string
	// None runs publishes and deliveries without a chain (pubsub still
	// validates what it publishes).
	None bool
	// LogFile makes the logger write to a file instead of io.Discard.
	LogFile bool
	// KitLogger makes the logger kit.NewLogger's, as a kit.Server's
	// default one is, writing to a file: lines batched, and formatted by
	// its flusher.
	KitLogger bool
	// Options returns the options of the kit.Server whose chain is used.
	Options func(tb testing.TB) []kit.Option
}

// BenchChains are the chains of [Bench], each that of a kit.Server built
// with kit.New, as cmd/example wires it (srv.ClientOptions,
// srv.HandlerOptions, srv.Logger, srv.Registry), with a JSON logger at
// info writing to io.Discard and the default configuration (no tracing
// exporter: Tracing only propagates trace context):
//
//   - chain: the default chain, every message logged;
//   - chain-logfile: the same, logging to a file in the test's temporary
//     directory;
//   - chain-kitlog: the same, logging to that file through kit.NewLogger,
//     as a kit.Server logs to stderr by default;
//   - chain-nosuccesslog: the same with
//     interceptors.WithoutMessageSuccessLogs;
//   - chain-sdktracer: the default chain with a real OpenTelemetry SDK tracer
//     provider that samples nothing (what a service with tracing configured
//     pays on unsampled messages), for information;
//   - nochain: no interceptor.
//
// io.Discard: the JSON handler formats each line in full, then hands it to
// the writer, so the cost left out is the write itself: one system call per
// line to a file or a pipe, as for every RPC line, and the same whatever
// produces the line; chain-logfile measures it.
var BenchChains = []BenchChain{
	{Name: "chain"},
	{Name: "chain-logfile", LogFile: true},
	{Name: "chain-kitlog", LogFile: true, KitLogger: true},
	{Name: "chain-nosuccesslog", Options: func(testing.TB) []kit.Option {
		return []kit.Option{kit.WithInterceptorOptions(interceptors.WithoutMessageSuccessLogs())}
	}},
	{Name: "chain-sdktracer", Options: func(tb testing.TB) []kit.Option {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
		tb.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return []kit.Option{kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp))}
	}},
	{Name: "nochain", None: true},
}

// Bench runs pubsub's benchmarks on a broker: publish+consume throughput
// (msgs/s and CPU µs per message) and end-to-end latency at a paced rate
// (p50 and p99 in µs), for 100 B and 4 KiB messages, through each of
// [BenchChains].
func Bench(b *testing.B, broker pubsub.Broker) {
	for _, size := range benchSizes {
		for _, chain := range BenchChains {
			b.Run(fmt.Sprintf("throughput/%s/%s", size.name, chain.Name), func(b *testing.B) {
				benchThroughput(b, broker, size.size, chain.PubsubOptions(b))
			})
		}
	}
	for _, size := range benchSizes {
		for _, chain := range BenchChains {
			b.Run(fmt.Sprintf("latency/%s/%s", size.name, chain.Name), func(b *testing.B) {
				benchLatency(b, broker, size.size, chain.PubsubOptions(b))
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

// PubsubOptions returns the options of the publishers and subscribers of a
// benchmark: those of a new kit.Server (never run: its options work without
// it) with c's options, as cmd/example passes them.
func (c BenchChain) PubsubOptions(tb testing.TB) []pubsub.Option {
	tb.Helper()
	if c.None {
		return nil
	}
	var out io.Writer = io.Discard
	if c.LogFile {
		f, err := os.Create(filepath.Join(tb.TempDir(), "log.json"))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = f.Close() })
		out = f
	}
	logger := slog.New(slog.NewJSONHandler(out, nil))
	if c.KitLogger {
		logger = kit.NewLogger(out, "json", slog.LevelInfo)
	}
	opts := []kit.Option{kit.WithLogger(logger)}
	if c.Options != nil {
		opts = append(opts, c.Options(tb)...)
	}
	srv, err := kit.New(kit.Config{AdminAddr: kit.AdminOff, Addr: "127.0.0.1:0"}, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return []pubsub.Option{
		pubsub.WithClientOptions(srv.ClientOptions()...),
		pubsub.WithHandlerOptions(srv.HandlerOptions()...),
		pubsub.WithLogger(srv.Logger()),
		pubsub.WithRegistry(srv.Registry()),
	}
}

// benchThroughput publishes b.N messages as fast as the broker's window
// allows and consumes them.
func benchThroughput(b *testing.B, broker pubsub.Broker, size int, opts []pubsub.Option) {
	topic := benchTopic()
	count := NewCountdown(b.N)
	sub, err := pubsub.NewSubscriber(broker, topic, "bench", func(context.Context, *pingv1.PingRequest) error {
		count.Handled()
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
	count.Wait(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	cpu.Report(b, b.N)
}

// Countdown counts the messages a throughput benchmark handled: first a
// warm-up of a tenth of b.N, untimed, so that every run is measured in the
// same steady state whatever ran before it in the process, then b.N.
type Countdown struct {
	warm, total int64
	handled     atomic.Int64
	warmed      chan struct{}
	done        chan struct{}
}

// NewCountdown returns a Countdown for a benchmark of n messages.
func NewCountdown(n int) *Countdown {
	warm := int64(n / 10)
	c := &Countdown{warm: warm, total: warm + int64(n), warmed: make(chan struct{}), done: make(chan struct{})}
	if warm == 0 {
		close(c.warmed)
	}
	return c
}

// WarmUp is the number of messages to publish before the timed ones.
func (c *Countdown) WarmUp() int { return int(c.warm) }

// Handled counts one handled message; call it once per message.
func (c *Countdown) Handled() {
	switch c.handled.Add(1) {
	case c.warm:
		close(c.warmed)
	case c.total:
		close(c.done)
	}
}

// WaitWarm waits until the warm-up's messages were handled.
func (c *Countdown) WaitWarm(b *testing.B) { c.wait(b, c.warmed) }

// Wait waits until every message was handled.
func (c *Countdown) Wait(b *testing.B) { c.wait(b, c.done) }

func (c *Countdown) wait(b *testing.B, ch chan struct{}) {
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		b.Fatalf("handled %d of %d messages (%d of them the warm-up)", c.handled.Load(), c.total, c.warm)
	}
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
