// Command tracecall reads a runtime execution trace of a benchserver
// serving one call at a time (benchserver -trace, pinned to one core:
// scripts/bench-trace.sh) and prints where a call's time goes on the
// server. A call runs from the moment the runtime learns that its request
// has arrived (the goroutine reading the connection is made runnable by the
// network poller) to the next request's arrival; its path is the part up to
// the start of the response's last write(2) to the socket. For the path it
// prints the time each kind of goroutine ran (the HTTP/2 serve loop, the
// handler, net/http's frame writers, batchconn's flusher, the frame
// reader, the collector...), the time inside system calls and what is left
// (the scheduler, an idle P); then the time inside the first and the last
// write(2) of the response, and what ran after the path. Medians (and
// means) over the calls after -skip; the medians of the parts do not add
// up to the median path.
//
// With -events it prints instead, for a trace of a server on any number of
// Ps, what the runtime did per call over the whole trace: goroutines
// created (and by whom), goroutines unblocked (and by whom: a goroutine's
// stack, or the runtime's network poller or timers), goroutines blocked
// (and why), yields (runtime.Gosched and the like, by stack), system
// calls, Ps started, goroutines resumed on another P than they last ran
// on, and the time each kind of goroutine ran (see [eventCounts]). It is
// how a hand-off to another goroutine or a wake of another thread on a
// call's path shows (BENCHMARKS.md 1.44, 24).
//
//	go run ./internal/bench/tracecall -skip 500 trace.out
//	go run ./internal/bench/tracecall -events 0.05 trace.out
package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/exp/trace"
)

func main() {
	skip := flag.Int("skip", 1000, "calls to leave out at the start (warm-up)")
	events := flag.Float64("events", 0, "print the runtime's events that happen at least this often a call (e.g. 0.05), not the calls' times")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tracecall [-skip N | -events MIN] TRACE")
		os.Exit(2)
	}
	if *events > 0 {
		if err := printEvents(flag.Arg(0), *events); err != nil {
			fmt.Fprintln(os.Stderr, "tracecall:", err)
			os.Exit(1)
		}
		return
	}
	calls, err := read(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracecall:", err)
		os.Exit(1)
	}
	if len(calls) <= *skip+10 {
		fmt.Fprintf(os.Stderr, "tracecall: %d calls in the trace, %d skipped\n", len(calls), *skip)
		os.Exit(1)
	}
	report(os.Stdout, calls[*skip:len(calls)-1])
}

// call is one cycle: from a request's arrival to the next's.
type call struct {
	start, end, next trace.Time       // arrival, last socket write's start, next arrival
	writes           int              // socket writes
	ran              map[string]int64 // ns run before end, by goroutine kind
	after            map[string]int64 // ns run after end, by goroutine kind
	sys              int64            // ns in system calls before end
	sysAfter         int64            // ns in system calls after end
	wdur             []int64          // ns in each socket write(2)
}

// read returns the calls of the trace at path, in order.
func read(path string) ([]*call, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return nil, err
	}
	kind := goKinds{}
	waitStack := map[trace.GoID]string{}
	running := map[trace.GoID]trace.Time{}
	inSys := map[trace.GoID]trace.Time{}
	sockWrite := map[trace.GoID]*call{} // goroutines in a socket write, for the call it is part of
	var calls []*call
	var cur *call
	charge := func(g trace.GoID, from, to trace.Time) {
		if cur == nil {
			return
		}
		from = max(from, cur.start) // a call's time starts at its arrival
		if to <= from {
			return
		}
		k := kind[g]
		if k == "" {
			k = "?"
		}
		if cur.end == 0 {
			cur.ran[k] += int64(to - from)
		} else {
			cur.after[k] += int64(to - from)
		}
	}
	err = eachTransition(r, func(ev trace.Event, st trace.StateTransition) {
		if st.Resource.Kind != trace.ResourceGoroutine {
			return
		}
		g := st.Resource.Goroutine()
		from, to := st.Goroutine()
		t := ev.Time()
		kind.note(ev, st)
		if from == trace.GoRunning {
			charge(g, running[g], t)
			delete(running, g)
		}
		if from == trace.GoSyscall {
			if s, ok := inSys[g]; ok && cur != nil && t > cur.start {
				if cur.end == 0 {
					cur.sys += int64(t - max(s, cur.start))
				} else {
					cur.sysAfter += int64(t - max(s, cur.start))
				}
			}
			if c := sockWrite[g]; c != nil {
				c.wdur = append(c.wdur, int64(t-inSys[g]))
				delete(sockWrite, g)
			}
			delete(inSys, g)
		}
		switch to {
		case trace.GoRunning:
			running[g] = t
		case trace.GoSyscall:
			inSys[g] = t
			if stk := st.Stack.String() + ev.Stack().String(); cur != nil && strings.Contains(stk, "net.(*conn).Write") {
				cur.writes++
				sockWrite[g] = cur
				// the latest socket write so far ends the call; what
				// ran after an earlier one is charged before it
				if cur.end != 0 {
					mergeInto(cur.ran, cur.after)
					clear(cur.after)
					cur.sys += cur.sysAfter
					cur.sysAfter = 0
				}
				cur.end = t
			}
		case trace.GoWaiting:
			waitStack[g] = ""
			if st.Reason == "network" {
				waitStack[g] = st.Stack.String() + ev.Stack().String()
			}
		case trace.GoRunnable:
			if from == trace.GoWaiting && isConnRead(waitStack[g]) {
				if cur != nil && cur.end != 0 {
					cur.next = t
					calls = append(calls, cur)
				}
				if cur == nil || cur.end != 0 {
					cur = &call{start: t, ran: map[string]int64{}, after: map[string]int64{}}
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return calls, nil
}

// mergeInto adds src's times to dst's.
func mergeInto(dst, src map[string]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

// isConnRead tells a goroutine waiting for a request's bytes.
func isConnRead(stk string) bool {
	return stk != "" && (strings.Contains(stk, "readFrames") || strings.Contains(stk, "(*connReader)") || strings.Contains(stk, "(*conn).serve") ||
		strings.Contains(stk, "grpc") || strings.Contains(stk, "http2.(*Framer)"))
}

// kinds names goroutines by a function on their stack, first match wins.
var kinds = []struct{ fn, kind string }{
	{"runHandler", "handler"},
	{"readFrames", "h2 frame reader"},
	{"writeFrameAsync", "h2 frame writer (flush)"},
	{"batchconn.(*conn).flushLoop", "batchconn flusher"},
	{"gcBgMarkWorker", "GC worker"},
	{"bgsweep", "GC sweep"},
	{"bgscavenge", "GC scavenge"},
	{"(*conn).serve", "conn (h2 serve loop; HTTP/1 handler)"},
	{"backgroundRead", "http1 background read"},
	{"loopyWriter", "grpc-go writer"},
	{"(*Server).serveStreams", "grpc-go conn"},
	{"(*Server).handleStream", "grpc-go handler"},
	{"(*http2Client)", "grpc-go"},
	{"logwriter", "kit log flusher"},
	{"timerproc", "timers"},
}

// kindOf names the goroutine whose stack is s, "" if s is empty.
func kindOf(s trace.Stack) string {
	var frames []string
	for f := range s.Frames() {
		frames = append(frames, f.Func)
	}
	if len(frames) == 0 {
		return ""
	}
	for _, k := range kinds {
		for _, fn := range frames {
			if strings.Contains(fn, k.fn) {
				return k.kind
			}
		}
	}
	return frames[len(frames)-1]
}

// median returns the median of xs, in µs, without reordering xs.
func median(xs []int64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return float64(xs[len(xs)/2]) / 1e3
}

// mean returns the mean of xs, in µs.
func mean(xs []int64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s int64
	for _, x := range xs {
		s += x
	}
	return float64(s) / float64(len(xs)) / 1e3
}

// report prints the calls' medians and means.
func report(w io.Writer, calls []*call) {
	var path, cycle, rest, sys, writes, other, firstW, lastW []int64
	for _, c := range calls {
		path = append(path, int64(c.end-c.start))
		cycle = append(cycle, int64(c.next-c.start))
		rest = append(rest, int64(c.next-c.end))
		if len(c.wdur) > 0 {
			firstW = append(firstW, c.wdur[0])
			lastW = append(lastW, c.wdur[len(c.wdur)-1])
		}
		sys = append(sys, c.sys)
		writes = append(writes, int64(c.writes))
		var ran int64
		for _, v := range c.ran {
			ran += v
		}
		other = append(other, int64(c.end-c.start)-ran-c.sys)
	}
	line := func(name string, xs []int64) {
		fmt.Fprintf(w, "%-42s %8.1f %8.1f\n", name, median(xs), mean(xs))
	}
	fmt.Fprintf(w, "calls %d, socket writes a call %.2f\n", len(calls), mean(writes)*1e3)
	fmt.Fprintf(w, "%-42s %8s %8s\n", "µs a call", "median", "mean")
	line("arrival -> last socket write (path)", path)
	line("arrival -> next arrival (cycle)", cycle)
	line("last socket write -> next arrival", rest)
	line("first socket write(2), inside", firstW)
	line("last socket write(2), inside", lastW)
	printKinds(line, "  on path: ", calls, func(c *call) map[string]int64 { return c.ran })
	line("  on path: system calls", sys)
	line("  on path: rest (scheduler, idle)", other)
	printKinds(line, "  after:   ", calls, func(c *call) map[string]int64 { return c.after })
}

// printKinds prints, for each kind of goroutine that ran (part of each
// call given by times), its time a call, the largest mean first.
func printKinds(line func(string, []int64), prefix string, calls []*call, times func(*call) map[string]int64) {
	byKind := map[string][]int64{}
	for _, c := range calls {
		for k := range times(c) {
			byKind[k] = nil
		}
	}
	for k := range byKind {
		for _, c := range calls {
			byKind[k] = append(byKind[k], times(c)[k])
		}
	}
	keys := slices.Collect(maps.Keys(byKind))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(mean(byKind[b]), mean(byKind[a])) })
	for _, k := range keys {
		if mean(byKind[k]) >= 0.05 {
			line(prefix+k, byKind[k])
		}
	}
}
