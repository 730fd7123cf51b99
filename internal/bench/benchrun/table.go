package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

const header = "| pin | load | in flight | variant | round | calls/s | CPU µs/call | p50 | p99 | syscalls/call: all | read | write | futex | epoll |\n" +
	"|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"

func row(r result) string {
	return fmt.Sprintf("| %s | %s | %d | %s | %d | %.0f | %.1f | %s | %s | %s | %s | %s | %s | %s |",
		r.Pin, loadName(r.TLS, r.Scenario), r.Scenario.InFlight, r.Variant, r.Round, r.callsPerSec(),
		float64(r.cpuPerCall())/float64(time.Microsecond), fmtLatency(r.P50), fmtLatency(r.P99),
		fmtSys(r.Sys.all), fmtSys(r.Sys.read), fmtSys(r.Sys.write), fmtSys(r.Sys.futex), fmtSys(r.Sys.epoll))
}

// fmtSys formats a syscall count per call, "–" when not counted.
func fmtSys(n float64) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", n)
}

// loadName is the scenario's name, with the protocol TLS negotiates.
func loadName(useTLS bool, sc scenario) string {
	switch {
	case !useTLS:
		return sc.Name
	case sc.Name == "grpc-h2c":
		return "grpc-h2+tls"
	}
	return sc.Name + "+tls"
}

func fmtLatency(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// setting is one pinning and scenario: the runs whose ratios count.
type setting struct {
	tls bool
	pin string
	sc  scenario
}

// medians holds each setting's medians by variant.
type medians map[setting]map[string]*median

func collect(results []result) (medians, []setting) {
	m := medians{}
	var order []setting
	for _, r := range results {
		k := setting{r.TLS, r.Pin, r.Scenario}
		if m[k] == nil {
			m[k] = map[string]*median{}
			order = append(order, k)
		}
		if m[k][r.Variant] == nil {
			m[k][r.Variant] = &median{}
		}
		m[k][r.Variant].add(r)
	}
	return m, order
}

// printTable prints every run, each variant's medians relative to base,
// and the targets.
func printTable(w io.Writer, results []result, variants []string, base string) {
	fmt.Fprintln(w, header)
	for _, r := range results {
		fmt.Fprintln(w, row(r))
	}
	m, settings := collect(results)
	fmt.Fprintf(w, "\nMedians. × is relative to %s: the median of the ratios within each round, whose runs are\n"+
		"close in time (lower CPU is better, higher calls/s is better):\n\n", base)
	fmt.Fprintln(w, "| pin | load | in flight | variant | CPU µs/call | × CPU | calls/s | × calls/s | p50 | p99 | syscalls/call | writes/call |")
	fmt.Fprintln(w, "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, k := range settings {
		b := m[k][base]
		for _, v := range variants {
			x := m[k][v]
			if x == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %.1f | %s | %.0f | %s | %s | %s | %s | %s |\n",
				k.pin, loadName(k.tls, k.sc), k.sc.InFlight, v, x.cpu(), ratio(x, b, cpuOf), x.rate(), ratio(x, b, rateOf),
				fmtLatency(x.p50()), fmtLatency(x.p99()), fmtSys(med(x.sys)), fmtSys(med(x.writes)))
		}
	}
	printTargets(w, m, settings)
}

// ratio formats paired(x, base, f), or "–" without base.
func ratio(x, base *median, f func(result) float64) string {
	if base == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f", paired(x, base, f))
}

// paired is the median over rounds of f(x's run) / f(base's run). The
// variants of a round run one after the other, so the ratio cancels most
// of the drift in the machine's load that the medians of each variant
// keep.
func paired(x, base *median, f func(result) float64) float64 {
	return med(roundRatios(x, base, f))
}

// roundRatios is f(x's run) / f(base's run) for every round both ran.
func roundRatios(x, base *median, f func(result) float64) []float64 {
	var ratios []float64
	for _, xr := range x.runs {
		for _, br := range base.runs {
			if xr.Round == br.Round && f(br) != 0 {
				ratios = append(ratios, f(xr)/f(br))
			}
		}
	}
	return ratios
}

func cpuOf(r result) float64  { return float64(r.cpuPerCall()) }
func rateOf(r result) float64 { return r.callsPerSec() }
func p50Of(r result) float64  { return float64(r.P50) }

// printTargets checks issue 7's targets for kit (and kit-otel) against
// connect and grpc-go, setting by setting.
func printTargets(w io.Writer, m medians, settings []setting) {
	var lines []string
	for _, k := range settings {
		for _, v := range []string{"kit", "kit-otel"} {
			kit, conn, grpc := m[k][v], m[k]["connect"], m[k]["grpc-go"]
			if kit == nil || conn == nil {
				continue
			}
			where := fmt.Sprintf("%s | %s | %d | %s", k.pin, loadName(k.tls, k.sc), k.sc.InFlight, v)
			if k.sc.InFlight == 1 {
				// At one call in flight the target is latency: p50 no
				// worse than bare connect-go's.
				lines = append(lines, target(where, "p50 ÷ connect", roundRatios(kit, conn, p50Of), 1))
				continue
			}
			limit := 0.8
			if k.sc.Name == "json-http1" {
				limit = 1.25
			}
			lines = append(lines, target(where, "CPU/call ÷ connect", roundRatios(kit, conn, cpuOf), limit))
			if grpc != nil {
				lines = append(lines, target(where, "CPU/call ÷ grpc-go (stretch)", roundRatios(kit, grpc, cpuOf), 2.5))
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprint(w, "\nTargets of issue 7 (same run: the median of the ratios within each round, their range,\n"+
		"and the rounds whose ratio meets the target):\n\n")
	fmt.Fprintln(w, "| pin | load | in flight | variant | measure | ratio | range | target | met | rounds met |")
	fmt.Fprintln(w, "|---|---|--:|---|---|--:|--:|--:|---|--:|")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// target is a targets row: the median of ratios against limit, their range,
// and how many of them are within it.
func target(where, what string, ratios []float64, limit float64) string {
	if len(ratios) == 0 {
		return fmt.Sprintf("| %s | %s | – | – | ≤ %.2f | – | 0/0 |", where, what, limit)
	}
	got := med(ratios)
	met := "yes"
	if got > limit {
		met = "**no**"
	}
	within := 0
	for _, r := range ratios {
		if r <= limit {
			within++
		}
	}
	return fmt.Sprintf("| %s | %s | %.2f | %.2f–%.2f | ≤ %.2f | %s | %d/%d |",
		where, what, got, slices.Min(ratios), slices.Max(ratios), limit, met, within, len(ratios))
}

// median collects the runs of one variant in one setting.
type median struct {
	runs                                 []result
	cpus, rates, p50s, p99s, sys, writes []float64
}

func (m *median) add(r result) {
	m.runs = append(m.runs, r)
	m.cpus = append(m.cpus, float64(r.cpuPerCall())/float64(time.Microsecond))
	m.rates = append(m.rates, r.callsPerSec())
	m.p50s = append(m.p50s, float64(r.P50))
	m.p99s = append(m.p99s, float64(r.P99))
	m.sys = append(m.sys, r.Sys.all)
	m.writes = append(m.writes, r.Sys.write)
}

func med(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func (m *median) cpu() float64       { return med(m.cpus) }
func (m *median) rate() float64      { return med(m.rates) }
func (m *median) p50() time.Duration { return time.Duration(med(m.p50s)) }
func (m *median) p99() time.Duration { return time.Duration(med(m.p99s)) }
