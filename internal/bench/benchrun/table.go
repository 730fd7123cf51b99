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
	return fmt.Sprintf("| %s | %s | %d | %s | %d | %.0f | %.1f | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |",
		r.Pin, loadName(r.TLS, r.Scenario), r.Scenario.InFlight, r.Variant, r.Round, r.callsPerSec(),
		float64(r.cpuPerCall())/float64(time.Microsecond), fmtLatency(r.P50), fmtLatency(r.P99),
		r.Sys.all, r.Sys.read, r.Sys.write, r.Sys.futex, r.Sys.epoll)
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

// printTable prints every run, then each variant's median CPU per call and
// calls/s relative to the first variant for each pinning and scenario.
func printTable(w io.Writer, results []result, variants []string) {
	fmt.Fprintln(w, header)
	for _, r := range results {
		fmt.Fprintln(w, row(r))
	}
	if len(variants) < 2 {
		return
	}
	fmt.Fprintf(w, "\nMedians relative to %s (lower CPU is better, higher calls/s is better):\n\n", variants[0])
	fmt.Fprintln(w, "| pin | load | in flight | variant | CPU µs/call | × CPU | calls/s | × calls/s | p50 | p99 |")
	fmt.Fprintln(w, "|---|---|--:|---|--:|--:|--:|--:|--:|--:|")
	type key struct {
		tls bool
		pin string
		sc  scenario
	}
	var keys []key
	for _, r := range results {
		if k := (key{r.TLS, r.Pin, r.Scenario}); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		var base median
		for i, v := range variants {
			var m median
			for _, r := range results {
				if r.TLS == k.tls && r.Pin == k.pin && r.Scenario == k.sc && r.Variant == v {
					m.add(r)
				}
			}
			if i == 0 {
				base = m
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %.1f | %.2f | %.0f | %.2f | %s | %s |\n",
				k.pin, loadName(k.tls, k.sc), k.sc.InFlight, v, m.cpu(), m.cpu()/base.cpu(), m.rate(), m.rate()/base.rate(),
				fmtLatency(m.p50()), fmtLatency(m.p99()))
		}
	}
}

// median collects the runs of one variant in one setting.
type median struct{ cpus, rates, p50s, p99s []float64 }

func (m *median) add(r result) {
	m.cpus = append(m.cpus, float64(r.cpuPerCall())/float64(time.Microsecond))
	m.rates = append(m.rates, r.callsPerSec())
	m.p50s = append(m.p50s, float64(r.P50))
	m.p99s = append(m.p99s, float64(r.P99))
}

func med(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func (m *median) cpu() float64       { return med(m.cpus) }
func (m *median) rate() float64      { return med(m.rates) }
func (m *median) p50() time.Duration { return time.Duration(med(m.p50s)) }
func (m *median) p99() time.Duration { return time.Duration(med(m.p99s)) }
