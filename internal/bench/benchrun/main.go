// Command benchrun measures benchserver variants under h2load (gRPC over
// h2c) and wrk (Connect JSON over HTTP/1.1) in one run, so that their ratios
// hold on a noisy machine, and prints a Markdown table. scripts/bench.sh
// installs the load generators, builds both commands and runs this one.
//
// For each pinning (server on CPU 0 and load generator on CPU 1, or both
// unpinned), each scenario and each round, every variant that can serve the
// scenario (grpc-go serves no Connect JSON) gets a fresh server, a warm-up,
// and a measured run. It reports calls/s, server CPU per call
// (utime+stime from /proc/PID/stat), the 50th and 99th percentile
// latency, and, with -syscalls, syscalls per call counted by perf during a
// second run; then the medians relative to -base and issue 7's targets
// (to stdout, and to -out). Rounds alternate the variants' order.
//
// Kit variants log to a file in -work (-log file) or to io.Discard. A
// variant written NAME@BINARY runs another benchserver build, to measure a
// library change against the build before it in the same run:
//
//	benchrun -variants kit@bin/benchserver-before,kit -scenarios grpc-h2c:50
//
// -cpuprofile DIR makes every server write a CPU profile there.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// scenario is one kind of load. With -tls, grpc-h2c is gRPC over HTTP/2
// negotiated by ALPN, and json-http1 is over TLS too.
type scenario struct {
	Name     string // grpc-h2c or json-http1
	InFlight int    // calls in flight
}

// result is one measured run.
type result struct {
	TLS      bool
	Pin      string
	Scenario scenario
	Variant  string
	Round    int
	Calls    int64
	Failed   int64
	Elapsed  time.Duration
	CPU      time.Duration // server utime+stime during the run
	P50, P99 time.Duration
	Sys      syscalls // per call; zero without -syscalls
}

func (r result) callsPerSec() float64 { return float64(r.Calls) / r.Elapsed.Seconds() }

func (r result) cpuPerCall() time.Duration {
	if r.Calls == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Calls)
}

type options struct {
	server    string
	variants  []string
	scenarios []scenario
	pins      []string
	rounds    int
	calls50   int
	calls1    int
	wrkTime   time.Duration
	syscalls  bool
	tls       bool
	work      string
	base      string
	log       string
	profiles  string
	out       string
}

func main() {
	var o options
	var variants, scenarios, pins string
	flag.StringVar(&o.server, "server", "bin/benchserver", "benchserver binary")
	flag.StringVar(&variants, "variants", "kit,kit-otel,kit-nochain,kit-nobatch,connect,grpc-go", "comma-separated benchserver variants")
	flag.StringVar(&scenarios, "scenarios", "grpc-h2c:50,grpc-h2c:1,json-http1:50,json-http1:1", "comma-separated NAME:INFLIGHT")
	flag.StringVar(&pins, "pin", "pinned,unpinned", "pinned (server on CPU 0, load on CPU 1) and/or unpinned")
	flag.IntVar(&o.rounds, "rounds", 1, "measured runs per variant and scenario, interleaved")
	flag.IntVar(&o.calls50, "n", 200000, "h2load calls per run with many in flight")
	flag.IntVar(&o.calls1, "n1", 20000, "h2load calls per run with one in flight")
	flag.DurationVar(&o.wrkTime, "wrk-duration", 5*time.Second, "wrk run length")
	flag.BoolVar(&o.syscalls, "syscalls", true, "count syscalls per call with perf in an extra run")
	flag.BoolVar(&o.tls, "tls", false, "serve and load over TLS: h2 by ALPN for gRPC, HTTP/1.1 for JSON")
	flag.StringVar(&o.work, "work", "", "directory for request files and logs (default: a temporary one)")
	flag.StringVar(&o.base, "base", "connect", "variant the medians are compared with")
	flag.StringVar(&o.log, "log", "file", `where kit variants log: "file" (a JSON file in -work) or "discard"`)
	flag.StringVar(&o.profiles, "cpuprofile", "", "directory for a CPU profile of every server (VARIANT-LOAD-INFLIGHT-PIN-ROUND.pprof)")
	flag.StringVar(&o.out, "out", "", "also write the tables to this file")
	replayFrom := flag.String("replay", "", "print the tables again from the per-run rows of an earlier run (its stderr or -out file)")
	flag.Parse()
	o.variants = strings.Split(variants, ",")
	o.pins = strings.Split(pins, ",")
	for _, s := range strings.Split(scenarios, ",") {
		var sc scenario
		name, n, ok := strings.Cut(s, ":")
		if _, err := fmt.Sscan(n, &sc.InFlight); !ok || err != nil || sc.InFlight < 1 {
			fatalf("bad -scenarios entry %q: want NAME:INFLIGHT", s)
		}
		sc.Name = name
		o.scenarios = append(o.scenarios, sc)
	}
	if o.log != "file" && o.log != "discard" {
		fatalf("bad -log %q: want file or discard", o.log)
	}
	if *replayFrom != "" {
		results, variants, err := replay(*replayFrom)
		if err != nil {
			fatalf("%v", err)
		}
		if flagSet("variants") {
			variants = o.variants
		}
		printTable(os.Stdout, results, variants, o.base)
		return
	}
	if err := run(context.Background(), o); err != nil {
		fatalf("%v", err)
	}
}

// flagSet reports whether the named flag was given.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", args...)
	os.Exit(1)
}

func run(ctx context.Context, o options) error {
	if o.work == "" {
		dir, err := os.MkdirTemp("", "benchrun")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.work = dir
	}
	if o.profiles != "" {
		if err := os.MkdirAll(o.profiles, 0o755); err != nil {
			return err
		}
	}
	files, err := writeRequestFiles(o.work)
	if err != nil {
		return err
	}
	started := machine()
	var results []result
	for _, pin := range o.pins {
		if pin != "pinned" && pin != "unpinned" {
			return fmt.Errorf("bad -pin %q: want pinned or unpinned", pin)
		}
		for _, sc := range o.scenarios {
			for round := 1; round <= o.rounds; round++ {
				// Even rounds run the variants in reverse, so that a trend in
				// the machine's load does not always favour the same one.
				order := slices.Clone(o.variants)
				if round%2 == 0 {
					slices.Reverse(order)
				}
				for _, v := range order {
					if !serves(v, sc) {
						continue
					}
					r, err := measure(ctx, o, files, pin, sc, v, round)
					if err != nil {
						return fmt.Errorf("%s %s:%d %s: %w", pin, sc.Name, sc.InFlight, v, err)
					}
					fmt.Fprintln(os.Stderr, row(r))
					results = append(results, r)
				}
			}
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%s; at the end: %s\n\n", started, loadAverage())
	printTable(&out, results, o.variants, o.base)
	fmt.Print(out.String())
	if o.out != "" {
		return os.WriteFile(o.out, []byte(out.String()), 0o644)
	}
	return nil
}

// machine describes the machine and the time of the run.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("Run of %s, %s, %d CPUs (%s); load average at the start: %s",
		time.Now().UTC().Format("2006-01-02 15:04Z"), runtime.Version(), runtime.NumCPU(), model, loadAverage())
}

// loadAverage is the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// serves reports whether variant can serve scenario sc: grpc-go speaks
// only gRPC.
func serves(variant string, sc scenario) bool {
	name, _, _ := strings.Cut(variant, "@")
	return name != "grpc-go" || sc.Name == "grpc-h2c"
}

// measure starts a fresh server, checks it answers the load's request
// correctly, warms it up, then measures one run (and a perf run).
func measure(ctx context.Context, o options, files requestFiles, pin string, sc scenario, variant string, round int) (result, error) {
	r := result{TLS: o.tls, Pin: pin, Scenario: sc, Variant: variant, Round: round}
	var extra []string
	if o.log == "file" {
		extra = append(extra, "-log", filepath.Join(o.work, "server.log"))
	}
	if o.profiles != "" {
		name := fmt.Sprintf("%s-%s-%d-%s-%d.pprof", strings.ReplaceAll(variant, "/", "_"), sc.Name, sc.InFlight, pin, round)
		extra = append(extra, "-cpuprofile", filepath.Join(o.profiles, name))
	}
	srv, err := startServer(ctx, o.server, variant, pin == "pinned", o.tls, extra)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	if err := checkServer(ctx, srv.addr, sc.Name, o.tls); err != nil {
		return r, fmt.Errorf("server answers wrongly: %w", err)
	}
	l := loader{tls: o.tls, work: o.work, files: files, addr: srv.addr, pinned: pin == "pinned", calls50: o.calls50, calls1: o.calls1, wrkTime: o.wrkTime}
	if _, err := l.run(ctx, sc, 10); err != nil { // warm-up: a tenth of a run
		return r, fmt.Errorf("warm-up: %w", err)
	}
	before, err := cpuTime(srv.pid())
	if err != nil {
		return r, err
	}
	lr, err := l.run(ctx, sc, 1)
	if err != nil {
		return r, err
	}
	after, err := cpuTime(srv.pid())
	if err != nil {
		return r, err
	}
	r.Calls, r.Failed, r.Elapsed, r.P50, r.P99 = lr.calls, lr.failed, lr.elapsed, lr.p50, lr.p99
	r.CPU = after - before
	if r.Failed > 0 {
		return r, fmt.Errorf("%d of %d calls failed", r.Failed, r.Calls+r.Failed)
	}
	if o.syscalls {
		p, err := startPerf(ctx, srv.pid(), filepath.Join(o.work, "perf.csv"))
		if err != nil {
			return r, err
		}
		lr, err := l.run(ctx, sc, 4)
		counts, perr := p.stop()
		if err != nil {
			return r, err
		}
		if perr != nil {
			return r, perr
		}
		r.Sys = counts.per(lr.calls)
	}
	return r, nil
}
