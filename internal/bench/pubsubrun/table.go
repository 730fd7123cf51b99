package main

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// row is one benchmark result.
type row struct {
	build      string
	round      int
	name       string // "bare", "bare-headers", or the pubsubbench.Chains name
	msgsPerSec float64
	cpuPerMsg  float64 // µs
	allocs     int
}

// benchLine matches a BenchmarkJetStream result line: its name, and the
// cpu-µs/msg, msgs/s and allocs/op metrics.
var benchLine = regexp.MustCompile(`^BenchmarkJetStream/(\S+?)(?:-\d+)?\s+\d+\s.*?([\d.]+) cpu-µs/msg\s+([\d.]+) msgs/s\s.*?(\d+) allocs/op`)

// parse reads the result lines of a BenchmarkJetStream run.
func parse(out string) ([]row, error) {
	var rows []row
	for line := range strings.Lines(out) {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		cpu, err1 := strconv.ParseFloat(m[2], 64)
		msgs, err2 := strconv.ParseFloat(m[3], 64)
		allocs, err3 := strconv.Atoi(m[4])
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("result line not understood: %q", line)
		}
		name := m[1][strings.LastIndex(m[1], "/")+1:]
		if loop, _, _ := strings.Cut(m[1], "/"); loop == "bare" || loop == "bare-headers" {
			name = loop
		}
		rows = append(rows, row{name: name, msgsPerSec: msgs, cpuPerMsg: cpu, allocs: allocs})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no BenchmarkJetStream result in:\n%s", out)
	}
	return rows, nil
}

// targets are issue 6's, as msgs/s × bare.
var targets = map[string]float64{"chain": 0.5, "chain-nosuccesslog": 0.8}

// ratios are one variant's same-round ratios to the bare loop.
type ratios struct {
	msgs, cpu []float64
	// cores are the ratios of the CPU the runs used per second of wall
	// time (msgs/s × cpu-µs/msg): msgs is cpu × cores, so where cores is
	// near 1 the variant's fewer msgs/s are its CPU per message, and below
	// 1 it left CPU unused that the reference used (a serial part, a stall).
	cores     []float64
	allocs    int
	cpuPerMsg []float64
}

// cores is the CPU that x's run used per second of wall time, in cores.
func (x row) cores() float64 { return x.msgsPerSec * x.cpuPerMsg / 1e6 }

// sameRound returns the ratios of variant in build, each to the run of ref
// ("bare" or "bare-headers") of its build and round.
func sameRound(rows []row, build, variant, ref string) ratios {
	var r ratios
	refs := map[int]row{} // by round
	for _, x := range rows {
		if x.build == build && x.name == ref {
			refs[x.round] = x
		}
	}
	for _, x := range rows {
		b, ok := refs[x.round]
		if x.build != build || x.name != variant || !ok {
			continue
		}
		r.msgs = append(r.msgs, x.msgsPerSec/b.msgsPerSec)
		r.cpu = append(r.cpu, b.cpuPerMsg/x.cpuPerMsg)
		r.cores = append(r.cores, x.cores()/b.cores())
		r.cpuPerMsg = append(r.cpuPerMsg, x.cpuPerMsg)
		r.allocs = x.allocs
	}
	return r
}

func writeTable(w io.Writer, rows []row, builds, variants []string, f flags) error {
	headers := slices.Contains(variants, "bare-headers")
	fmt.Fprintf(w, "pubsub on embedded JetStream, %s messages, %d rounds of %d messages; medians of the same-round ratios to the bare loop (range). "+
		"CPU used is msgs/s × cpu-µs/msg, the cores a run kept busy: msgs/s × bare is CPU efficiency × CPU used, so CPU used near 1 puts the gap in the CPU per message, below 1 in something serial:\n\n", f.size, f.rounds, f.n)
	extra, rule, blank := "", "", ""
	if headers { // the loop carrying pubsub's headers, as a second reference
		extra, rule, blank = " msgs/s × bare-headers |", "--:|", " |"
	}
	fmt.Fprintln(w, "| build | variant | msgs/s × bare | rounds ≥ target | CPU efficiency × bare | CPU used × bare | cpu-µs/msg | allocs/msg |"+extra)
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|"+rule)
	for _, build := range builds {
		bare := sameRound(rows, build, "bare", "bare")
		var cores []float64
		for _, x := range rows {
			if x.build == build && x.name == "bare" {
				cores = append(cores, x.cores())
			}
		}
		fmt.Fprintf(w, "| %s | bare loop | 1 | | 1 | 1 (%.2f cores) | %.1f | %d |%s\n", build, median(cores), median(bare.cpuPerMsg), bare.allocs, blank)
		for _, v := range variants {
			r := sameRound(rows, build, v, "bare")
			met := ""
			if t, ok := targets[v]; ok {
				n := 0
				for _, x := range r.msgs {
					if x >= t {
						n++
					}
				}
				met = fmt.Sprintf("%d/%d (≥ %.1f)", n, len(r.msgs), t)
			}
			fmt.Fprintf(w, "| %s | %s | **%.2f** (%.2f–%.2f) | %s | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.1f | %d |", build, v,
				median(r.msgs), slices.Min(r.msgs), slices.Max(r.msgs), met,
				median(r.cpu), slices.Min(r.cpu), slices.Max(r.cpu),
				median(r.cores), slices.Min(r.cores), slices.Max(r.cores), median(r.cpuPerMsg), r.allocs)
			if headers {
				if h := sameRound(rows, build, v, "bare-headers"); v != "bare-headers" && len(h.msgs) > 0 {
					fmt.Fprintf(w, " %.2f (%.2f–%.2f) |", median(h.msgs), slices.Min(h.msgs), slices.Max(h.msgs))
				} else {
					fmt.Fprint(w, blank)
				}
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

// median returns the middle of xs, without changing xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
