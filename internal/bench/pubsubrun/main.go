// Command pubsubrun measures pubsub on embedded JetStream against the bare
// nats.go/jetstream loop of the same server, round after round, and prints
// issue 6's ratios as a Markdown table: the median over the rounds of each
// variant's msgs/s divided by the bare loop's of the same round (and CPU
// efficiency, bare's cpu-µs/msg over the variant's), their range and the
// rounds that meet the targets; when bare-headers is measured, also each
// variant's msgs/s over that loop's, the reference that carries the
// headers pubsub must. `make bench-pubsub` runs it.
//
// Each round runs, for each test binary, the bare loop and the variants
// (pubsubbench.Chains names, and bare-headers: the bare loop with the
// headers a message published through pubsub carries), each in its own
// invocation of the binary's BenchmarkJetStream and after the same untimed
// warm-up, in an order that rotates from round to round, so that a round's
// runs are seconds apart and none gains from what ran before it in its
// process; rounds alternate which binary runs first. -before BINARY
// interleaves a second build (a natsjs test binary,
// `go test -c ./pubsub/natsjs`) to measure a change against it:
//
//	git stash && go test -c -o bin/natsjs-before.test ./pubsub/natsjs && git stash pop
//	go run ./internal/bench/pubsubrun -before bin/natsjs-before.test
//
// Written for this repository because the ratios have to be taken within a
// round: benchstat compares distributions of separate runs, which this
// machine's drift (2× within an hour) swamps.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
)

func main() {
	var f flags
	flag.IntVar(&f.rounds, "rounds", 6, "rounds; each runs the bare loop and every variant of every binary")
	flag.IntVar(&f.n, "n", 100000, "messages per run")
	flag.StringVar(&f.size, "size", "100B", "message size: 100B or 4KiB")
	flag.StringVar(&f.variants, "variants", "bare-headers,chain,chain-kitlog,chain-nosuccesslog,nochain",
		"comma-separated pubsubbench.Chains names, and bare-headers: the bare loop with the headers pubsub's messages carry")
	flag.StringVar(&f.binary, "test", "", "natsjs test binary (default: built into bin/natsjs.test)")
	flag.StringVar(&f.before, "before", "", "a second natsjs test binary, measured in the same rounds")
	flag.StringVar(&f.out, "out", "", "also write the tables to this file")
	flag.Parse()
	if err := run(context.Background(), f); err != nil {
		fmt.Fprintln(os.Stderr, "pubsubrun:", err)
		os.Exit(1)
	}
}

type flags struct {
	rounds         int
	n              int
	size, variants string
	binary, before string
	out            string
}

func run(ctx context.Context, f flags) error {
	if f.rounds < 1 || f.n < 1 {
		return fmt.Errorf("-rounds %d and -n %d must be positive", f.rounds, f.n)
	}
	if f.size != "100B" && f.size != "4KiB" {
		return fmt.Errorf("-size %q: want 100B or 4KiB", f.size)
	}
	if f.binary == "" {
		f.binary = "bin/natsjs.test"
		if err := os.MkdirAll("bin", 0o755); err != nil {
			return err
		}
		build := exec.CommandContext(ctx, "go", "test", "-c", "-o", f.binary, "./pubsub/natsjs")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building %s: %w", f.binary, err)
		}
	}
	builds := []string{f.binary}
	if f.before != "" {
		builds = []string{f.before, f.binary}
	}
	variants := strings.Split(f.variants, ",")
	var rows []row
	for round := 1; round <= f.rounds; round++ {
		order := builds
		if round%2 == 0 { // alternate which build runs first
			order = slices.Clone(builds)
			slices.Reverse(order)
		}
		for _, bin := range order {
			got, err := measure(ctx, bin, f.size, variants, f.n, round)
			if err != nil {
				return err
			}
			for _, r := range got {
				r.build, r.round = bin, round
				rows = append(rows, r)
				fmt.Fprintf(os.Stderr, "round %d %s %s: %.0f msgs/s, %.2f cpu-µs/msg, %.2f cores, %d allocs\n",
					round, bin, r.name, r.msgsPerSec, r.cpuPerMsg, r.cores(), r.allocs)
			}
		}
	}
	var w io.Writer = os.Stdout
	if f.out != "" {
		file, err := os.Create(f.out)
		if err != nil {
			return err
		}
		defer file.Close()
		w = io.MultiWriter(os.Stdout, file)
	}
	return writeTable(w, rows, builds, variants, f)
}

// measure runs the bare loop and each variant, each in its own invocation
// of bin (a fresh embedded server and heap, as every benchmark warms up
// first: pubsubbench.Countdown), starting with the round's turn in the
// list, so that no run is always first or last.
func measure(ctx context.Context, bin, size string, variants []string, n, round int) ([]row, error) {
	patterns := []string{"BenchmarkJetStream/^bare$/throughput/" + size + "$"}
	for _, v := range variants {
		if v == "bare-headers" {
			patterns = append(patterns, "BenchmarkJetStream/^bare-headers$/throughput/"+size+"$")
			continue
		}
		patterns = append(patterns, "BenchmarkJetStream/^pubsub$/throughput/"+size+"/^"+v+"$")
	}
	var rows []row
	for i := range patterns {
		p := patterns[(i+round)%len(patterns)]
		got, err := bench(ctx, bin, p, n)
		if err != nil {
			return nil, err
		}
		if len(got) != 1 {
			return nil, fmt.Errorf("%s -test.bench %s: %d results, want 1", bin, p, len(got))
		}
		rows = append(rows, got...)
	}
	return rows, nil
}

func bench(ctx context.Context, bin, pattern string, n int) ([]row, error) {
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", pattern,
		"-test.benchtime", fmt.Sprintf("%dx", n), "-test.benchmem")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s -test.bench %s: %w\n%s", bin, pattern, err, out)
	}
	return parse(string(out))
}
