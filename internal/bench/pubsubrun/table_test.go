package main

import (
	"math"
	"strings"
	"testing"
)

const sampleRound = `goos: linux
BenchmarkJetStream/bare/throughput/100B-2         	  100000	     19453 ns/op	   5.14 MB/s	        28.00 cpu-µs/msg	     50000 msgs/s	    3511 B/op	      55 allocs/op
BenchmarkJetStream/bare-headers/throughput/100B-2 	  100000	     19453 ns/op	   5.14 MB/s	        32.00 cpu-µs/msg	     45000 msgs/s	    5028 B/op	      73 allocs/op
BenchmarkJetStream/pubsub/throughput/100B/chain-2         	  100000	     28112 ns/op	   3.56 MB/s	        56.00 cpu-µs/msg	     30000 msgs/s	   10667 B/op	     86 allocs/op
BenchmarkJetStream/pubsub/throughput/100B/chain-nosuccesslog-2         	  100000	     22281 ns/op	   4.49 MB/s	        35.00 cpu-µs/msg	     41000 msgs/s	   10003 B/op	     85 allocs/op
PASS
`

func TestParse(t *testing.T) {
	rows, err := parse(sampleRound)
	if err != nil {
		t.Fatal(err)
	}
	want := []row{
		{name: "bare", msgsPerSec: 50000, cpuPerMsg: 28, allocs: 55},
		{name: "bare-headers", msgsPerSec: 45000, cpuPerMsg: 32, allocs: 73},
		{name: "chain", msgsPerSec: 30000, cpuPerMsg: 56, allocs: 86},
		{name: "chain-nosuccesslog", msgsPerSec: 41000, cpuPerMsg: 35, allocs: 85},
	}
	if len(rows) != len(want) {
		t.Fatalf("parsed %d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	if _, err := parse("FAIL\n"); err == nil {
		t.Error("parse of output without results: no error")
	}
}

func TestSameRound(t *testing.T) {
	var rows []row
	for round, bareMsgs := range []float64{50000, 100000} {
		got, err := parse(sampleRound)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			r.build, r.round = "b", round
			if r.name == "bare" {
				r.msgsPerSec = bareMsgs
			}
			rows = append(rows, r)
		}
	}
	r := sameRound(rows, "b", "chain-nosuccesslog", "bare")
	if len(r.msgs) != 2 || r.msgs[0] != 0.82 || r.msgs[1] != 0.41 {
		t.Errorf("msgs/s ratios %v, want [0.82 0.41]: each round's own bare loop", r.msgs)
	}
	if math.Abs(median(r.msgs)-0.615) > 1e-9 || r.cpu[0] != 0.8 {
		t.Errorf("median %v, cpu ratio %v; want 0.615 and 0.8", median(r.msgs), r.cpu[0])
	}
	// 41 000 msgs/s × 35 µs = 1.435 cores, against the bare loop's 1.4
	// (50 000 × 28 µs), then 2.8 (100 000 × 28 µs).
	if len(r.cores) != 2 || math.Abs(r.cores[0]-1.025) > 1e-9 || math.Abs(r.cores[1]-0.5125) > 1e-9 {
		t.Errorf("CPU used × bare %v, want [1.025 0.5125]", r.cores)
	}
	// msgs/s × bare is CPU efficiency × CPU used, round by round.
	for i := range r.msgs {
		if got := r.cpu[i] * r.cores[i]; math.Abs(got-r.msgs[i]) > 1e-9 {
			t.Errorf("round %d: CPU efficiency × CPU used = %v, msgs/s × bare %v", i, got, r.msgs[i])
		}
	}
	var out strings.Builder
	if err := writeTable(&out, rows, []string{"b"}, []string{"chain", "chain-nosuccesslog"}, flags{rounds: 2, n: 100000, size: "100B"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| b | chain-nosuccesslog | **0.61** (0.41–0.82) | 1/2 (≥ 0.8) | 0.80 (0.80–0.80) | 0.77 (0.51–1.03) | 35.0 |") ||
		!strings.Contains(out.String(), "| b | bare loop | 1 | | 1 | 1 (2.10 cores) | 28.0 | 55 |\n") {
		t.Errorf("table:\n%s", out.String())
	}
	out.Reset()
	if err := writeTable(&out, rows, []string{"b"}, []string{"bare-headers", "chain-nosuccesslog"}, flags{rounds: 2, n: 100000, size: "100B"}); err != nil {
		t.Fatal(err)
	}
	// 41 000 against the 45 000 of bare-headers in both rounds.
	if !strings.Contains(out.String(), "| 35.0 | 85 | 0.91 (0.91–0.91) |\n") || !strings.Contains(out.String(), "| b | bare loop | 1 | | 1 | 1 (2.10 cores) | 28.0 | 55 | |\n") {
		t.Errorf("table with bare-headers:\n%s", out.String())
	}
}
