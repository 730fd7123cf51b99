package pubsubbench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/pubsub"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Chain is an interceptor chain of the benchmarks. Its zero value is the
// default chain of a kit.Server, logging to io.Discard.
type Chain struct {
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

// Chains are the chains of pubsubtest.Bench, each that of a kit.Server built
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
var Chains = []Chain{
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

// PubsubOptions returns the options of the publishers and subscribers of a
// benchmark: those of a new kit.Server (never run: its options work without
// it) with c's options, as cmd/example passes them.
func (c Chain) PubsubOptions(tb testing.TB) []pubsub.Option {
	tb.Helper()
	if c.None {
		return nil
	}
	out := io.Discard
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
