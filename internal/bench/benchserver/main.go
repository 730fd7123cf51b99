// Command benchserver serves connectkit.ping.v1.PingService on loopback for
// the benchmark suite (`make bench`: scripts/bench.sh, driven by
// internal/bench/benchrun). Each -variant is one way of serving the same
// handler; it prints "listening on ADDR" once it accepts connections and
// shuts down gracefully on SIGINT or SIGTERM.
//
// Variants:
//
//	kit                kit.Server with its full default chain (tracing with
//	                   the default no-op provider, request ids, JSON logs at
//	                   info to -log, metrics, recovery, deadlines,
//	                   validation) and frame batching, as `kit.New` gives it
//	kit-otel           the same with a real OpenTelemetry SDK tracer provider
//	                   that samples nothing (OTEL_TRACES_EXPORTER=otlp,
//	                   OTEL_TRACES_SAMPLER=always_off): otelconnect's cost
//	kit-native         kit with KIT_METRICS_NATIVE_HISTOGRAMS=true: the
//	                   latency histograms native as well as classic
//	kit-auth           kit with kit.WithAuth: a static bearer token
//	                   ("Bearer bench", compared in constant time) whose
//	                   caller's principal the rpc lines name; the load
//	                   sends the token
//	kit-own-validator  kit whose chain validates with a protovalidate
//	                   validator of its own (validate.WithValidator), as
//	                   an application with validator options does
//	kit-nochain        kit.WithoutDefaultInterceptors(): deadlines only
//	kit-nobatch        kit with KIT_FRAME_BATCHING=false
//	kit-without-PIECE  kit with one piece of the chain left out, PIECE one of
//	                   tracing, requestid, logging, metrics, recovery,
//	                   validation: what that piece costs
//	kit-pieces         kit-nochain with the default chain's pieces as the
//	                   user's interceptors and a timestamp between each: at
//	                   exit it writes the median time per call each piece
//	                   takes on the way in and out (see pieceTimer)
//	connect            bare connect-go on net/http: HTTP/1.1 and h2c on one port
//	connect-batch      the same behind internal/batchconn's listener: h2c
//	                   connections batched (ModeH2C), or with -tls those
//	                   offering h2 by ALPN (ModeALPN and batchconn.TLSConfig)
//	connect-batch-all  every connection batched (batchconn.ModeAll)
//	grpc-go            google.golang.org/grpc's own server (gRPC only)
//
// With -tls it serves TLS (HTTP/2 by ALPN, and HTTP/1.1 but for grpc-go)
// with a self-signed certificate made at start. -cpuprofile writes a CPU
// profile of the server's whole life, -trace a runtime execution trace of
// it. With -stats, each SIGUSR1 writes the
// heap's figures after a collection and the goroutines to stderr
// (internal/bench/footprint reads them).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// flags are benchserver's settings.
type flags struct {
	addr    string
	variant string
	tls     bool
	logPath string // kit variants' JSON log: a file, or "discard"
}

func main() {
	var f flags
	flag.StringVar(&f.addr, "addr", "127.0.0.1:0", "address to listen on")
	flag.StringVar(&f.variant, "variant", "connect", "server variant (see the package doc)")
	flag.BoolVar(&f.tls, "tls", false, "serve TLS with a self-signed certificate")
	flag.StringVar(&f.logPath, "log", "discard", `kit variants' log file (JSON, info), or "discard"`)
	profile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	traceFile := flag.String("trace", "", "write a runtime execution trace (go tool trace) of the server's whole life to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile (every allocation sampled) to this file on exit")
	stats := flag.Bool("stats", false, "on SIGUSR1, collect and write the heap's figures and the goroutines to stderr")
	heapProfile := flag.String("heapprofile", "", "with -stats, also write the heap's profile to `PREFIX`-N.pb.gz on the Nth SIGUSR1 (every 4 KiB allocated sampled)")
	flag.Parse()
	if *heapProfile != "" {
		runtime.MemProfileRate = 4096
	}
	if *stats {
		serveStats(os.Stderr, *heapProfile)
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 1
	}
	err := run(f, *profile, *traceFile)
	if err == nil && *memProfile != "" {
		err = writeHeapProfile(*memProfile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

func run(f flags, profile, traceFile string) error {
	serve, ok := variants[f.variant]
	if _, piece, cut := strings.Cut(f.variant, "kit-without-"); cut && withoutPiece[piece] != nil {
		serve, ok = serveKit, true
	}
	if !ok {
		return fmt.Errorf("unknown -variant %q", f.variant)
	}
	logw := io.Discard
	if f.logPath != "discard" {
		file, err := os.Create(f.logPath)
		if err != nil {
			return err
		}
		defer file.Close()
		logw = file
	}
	if profile != "" {
		pf, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if traceFile != "" {
		tf, err := os.Create(traceFile)
		if err != nil {
			return err
		}
		defer tf.Close()
		if err := trace.Start(tf); err != nil {
			return err
		}
		defer trace.Stop()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := func(addr net.Addr) { fmt.Printf("listening on %s\n", addr) }
	return serve(ctx, f, logw, ready)
}

// writeHeapProfile writes the allocations made so far to path.
func writeHeapProfile(path string) error {
	pf, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // so that the profile holds every allocation until now
	if err := pprof.WriteHeapProfile(pf); err != nil {
		pf.Close()
		return err
	}
	return pf.Close()
}

// serveFunc serves the ping service as one variant, calls ready once it
// accepts connections, and returns after a graceful shutdown once ctx is
// done.
type serveFunc func(ctx context.Context, f flags, logw io.Writer, ready func(net.Addr)) error

var variants = map[string]serveFunc{
	"kit":               serveKit,
	"kit-otel":          serveKit,
	"kit-native":        serveKit,
	"kit-auth":          serveKit,
	"kit-nochain":       serveKit,
	"kit-pieces":        serveKit,
	"kit-nobatch":       serveKit,
	"kit-own-validator": serveKit,
	"connect":           serveConnect,
	"connect-batch":     serveConnect,
	"connect-batch-all": serveConnect,
	"grpc-go":           serveGRPC,
}

// echo is the one handler behind every variant.
func echo(req *pingv1.PingRequest) *pingv1.PingResponse {
	return &pingv1.PingResponse{Number: req.GetNumber(), Text: req.GetText()}
}

// pingService answers Ping with its request, as small a handler as can be.
type pingService struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (pingService) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(echo(req.Msg)), nil
}

// CountUp sends the numbers from 1 to its request's: the server stream of
// scripts/bench-instr.sh's "stream" load, which asks for one.
func (pingService) CountUp(_ context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	for i := int64(1); i <= req.Msg.GetNumber(); i++ {
		if err := stream.Send(&pingv1.CountUpResponse{Number: i}); err != nil {
			return err
		}
	}
	return nil
}
