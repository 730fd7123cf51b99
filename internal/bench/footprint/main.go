//go:build unix

// Command footprint measures what a served process costs at rest: the time
// from exec to ready, the resident memory (/proc/PID/status), the Go heap
// after a collection and the goroutines, at idle after the start, after
// calls, and (for the example) after more subscriptions on its embedded
// NATS server. It runs benchserver variants (-benchserver, built with the
// -stats flag it reads the heap through) and the example (-example, read
// through its admin port with KIT_PPROF=true), -rounds times each, and
// prints one Markdown row per run and then the medians. BENCHMARKS.md
// section 12 has the commands.
//
//	go build -o bin/benchserver ./internal/bench/benchserver
//	go build -o bin/example ./cmd/example
//	go run ./internal/bench/footprint -benchserver bin/benchserver -example bin/example
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// sample is the process's memory at one moment.
type sample struct {
	RSS, RSSAnon, RSSFile     uint64 // /proc/PID/status VmRSS, RssAnon, RssFile
	HeapInuse, HeapAlloc, Sys uint64 // runtime.MemStats after a collection
	StackInuse                uint64
	Goroutines                int
}

// run is one process's life: its start and its samples.
type run struct {
	Target    string
	Round     int
	Ready     time.Duration // exec to "listening on" (benchserver) or the "serving" line (example)
	ReadyZ    time.Duration // exec to /readyz 200 (example only)
	Idle      sample
	Calls     sample
	Subs      sample        // example with -subscriptions only
	Settled   sample        // -settle after the last phase, when set
	FirstCall time.Duration // the first call's time, from the client
	Goroutine string        // the goroutine profile at idle (last round's is printed with -goroutines)
}

func main() {
	benchserver := flag.String("benchserver", "bin/benchserver", "benchserver binary (empty: none)")
	example := flag.String("example", "bin/example", "example binary (empty: none)")
	variants := flag.String("variants", "connect,kit-nochain,kit,grpc-go", "benchserver variants")
	rounds := flag.Int("rounds", 5, "runs of each target")
	calls := flag.Int("calls", 1000, "calls per protocol after the idle sample")
	subs := flag.Int("subscriptions", 4, "subscriptions (each on a topic of its own) added to the example's embedded NATS after the calls")
	idle := flag.Duration("idle", 2*time.Second, "wait after ready before the idle sample")
	rpc := flag.String("rpc", "ping", `benchserver's calls: "ping" (PingService.Ping, whose messages carry protovalidate rules) or "health" (grpc.health.v1.Health/Check, whose do not; kit variants only)`)
	settle := flag.Duration("settle", 0, "if set, wait this long after the last phase and sample again (caches expired, memory returned to the OS)")
	goroutines := flag.Bool("goroutines", false, "print each target's goroutines at idle")
	profiles := flag.String("heapprofiles", "", "write heap profiles to this directory: benchserver's (-heapprofile) at each sample, the example's at each sample")
	flag.Parse()

	var runs []run
	for round := range *rounds {
		if *benchserver != "" {
			for _, v := range strings.Split(*variants, ",") {
				r, err := runBenchserver(*benchserver, v, *rpc, *calls, *idle, *settle, profilePrefix(*profiles, v, round))
				if err != nil {
					fail(fmt.Errorf("%s: %w", v, err))
				}
				r.Round = round
				runs = append(runs, r)
			}
		}
		if *example != "" {
			dir, err := os.MkdirTemp("", "footprint-nats-")
			if err != nil {
				fail(err)
			}
			for _, start := range []string{"cold", "warm"} {
				r, err := runExample(*example, dir, *calls, *subs, *idle, *settle, profilePrefix(*profiles, "example-"+start, round))
				if err != nil {
					fail(fmt.Errorf("example (%s): %w", start, err))
				}
				r.Target, r.Round = "example-"+start, round
				runs = append(runs, r)
			}
			os.RemoveAll(dir)
		}
	}
	report(os.Stdout, runs, *goroutines)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "footprint:", err)
	os.Exit(1)
}

func mb(v uint64) string { return fmt.Sprintf("%.1f", float64(v)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

// report prints every run, then each target's medians.
func report(w io.Writer, runs []run, goroutines bool) {
	fmt.Fprintln(w, "| target | round | ready ms | /readyz ms | first call ms | phase | VmRSS MiB | RssAnon | RssFile | HeapInuse MiB | HeapAlloc | Sys | stacks | goroutines |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range runs {
		for _, ph := range phases(r) {
			s := ph.s
			fmt.Fprintf(w, "| %s | %d | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", r.Target, r.Round, ms(r.Ready), ms(r.ReadyZ), float64(r.FirstCall)/1e6,
				ph.name, mb(s.RSS), mb(s.RSSAnon), mb(s.RSSFile), mb(s.HeapInuse), mb(s.HeapAlloc), mb(s.Sys), mb(s.StackInuse), s.Goroutines)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Medians:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | runs | ready ms | /readyz ms | first call ms | phase | VmRSS MiB | RssAnon | HeapInuse MiB | HeapAlloc | Sys | goroutines |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	var targets []string
	for _, r := range runs {
		if !slices.Contains(targets, r.Target) {
			targets = append(targets, r.Target)
		}
	}
	for _, t := range targets {
		var of []run
		for _, r := range runs {
			if r.Target == t {
				of = append(of, r)
			}
		}
		ready := median(of, func(r run) float64 { return float64(r.Ready) })
		readyz := median(of, func(r run) float64 { return float64(r.ReadyZ) })
		first := median(of, func(r run) float64 { return float64(r.FirstCall) })
		for i, ph := range phases(of[0]) {
			get := func(f func(sample) uint64) string {
				return mb(uint64(median(of, func(r run) float64 { return float64(f(phases(r)[i].s)) })))
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %.0f |\n", t, len(of), ms(time.Duration(ready)), ms(time.Duration(readyz)), first/1e6, ph.name,
				get(func(s sample) uint64 { return s.RSS }), get(func(s sample) uint64 { return s.RSSAnon }), get(func(s sample) uint64 { return s.HeapInuse }),
				get(func(s sample) uint64 { return s.HeapAlloc }), get(func(s sample) uint64 { return s.Sys }),
				median(of, func(r run) float64 { return float64(phases(r)[i].s.Goroutines) }))
		}
		if goroutines {
			fmt.Fprintf(w, "\n%s at idle:\n\n%s\n", t, of[len(of)-1].Goroutine)
		}
	}
}

type phase struct {
	name string
	s    sample
}

func phases(r run) []phase {
	ps := []phase{{"idle", r.Idle}, {"calls", r.Calls}}
	if r.Subs.RSS != 0 {
		ps = append(ps, phase{"subscriptions", r.Subs})
	}
	if r.Settled.RSS != 0 {
		ps = append(ps, phase{"settled", r.Settled})
	}
	return ps
}

func median(runs []run, f func(run) float64) float64 {
	vs := make([]float64, len(runs))
	for i, r := range runs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}
