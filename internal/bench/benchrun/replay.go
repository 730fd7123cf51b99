package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// replay reads the per-run rows that a run printed (its stderr, or the
// first table of -out) back into results, to print the tables again.
func replay(path string) ([]result, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var results []result
	var variants []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "|")
		if len(c) != 16 {
			continue // not a per-run row (14 columns between bars)
		}
		for i := range c {
			c[i] = strings.TrimSpace(c[i])
		}
		var r result
		var err error
		r.Pin, r.Variant = c[1], c[4]
		load, tls := strings.CutSuffix(c[2], "+tls")
		r.TLS = tls || load == "grpc-h2"
		r.Scenario.Name = map[string]string{"grpc-h2": "grpc-h2c"}[load]
		if r.Scenario.Name == "" {
			r.Scenario.Name = load
		}
		if r.Scenario.InFlight, err = strconv.Atoi(c[3]); err != nil {
			continue // the header
		}
		r.Round, _ = strconv.Atoi(c[5])
		rate, _ := strconv.ParseFloat(c[6], 64)
		cpu, _ := strconv.ParseFloat(c[7], 64)
		r.Calls, r.Elapsed = int64(rate), time.Second
		r.CPU = time.Duration(cpu * float64(r.Calls) * float64(time.Microsecond))
		r.P50, r.P99 = parseLatency(c[8]), parseLatency(c[9])
		sys := make([]float64, 5)
		for i := range sys {
			sys[i], _ = strconv.ParseFloat(c[10+i], 64)
		}
		r.Sys = syscalls{sys[0], sys[1], sys[2], sys[3], sys[4]}
		results = append(results, r)
		if !slices.Contains(variants, r.Variant) {
			variants = append(variants, r.Variant)
		}
	}
	if len(results) == 0 {
		return nil, nil, fmt.Errorf("%s: no per-run rows", path)
	}
	return results, variants, sc.Err()
}

func parseLatency(s string) time.Duration {
	d, _ := time.ParseDuration(strings.Replace(s, "µs", "us", 1))
	return d
}
