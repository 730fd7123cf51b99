package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/exp/trace"
)

// eventCounts are what -events prints: the runtime's events of a whole
// trace, counted by kind and by the stacks involved, and the time each kind
// of goroutine ran, each divided by the number of calls: the HTTP/1.x
// responses written to the socket by their connection's goroutine
// (net/http's serve loop), plus the HTTP/2 requests given a handler
// goroutine (net/http's runHandler); or, in a trace with neither, the
// socket writes. It needs no call
// boundaries, so it reads traces of a server on any number of Ps, where
// the calls of [read] merge (BENCHMARKS.md 1.43).
type eventCounts struct {
	calls  int
	counts map[string]int   // "create: F  by: STACK", "unblock: …", "block(REASON): …", "yield: …", "syscall: …", "resumed on another P: KIND", "procs started"
	ran    map[string]int64 // ns, by goroutine kind
}

// printEvents prints the counts of the trace at path, those of at least
// min a call.
func printEvents(path string, min float64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	ec, err := countEvents(f)
	if err != nil {
		return err
	}
	return ec.print(os.Stdout, min)
}

// countEvents counts the events of the trace in r.
func countEvents(r io.Reader) (*eventCounts, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, err
	}
	ec := &eventCounts{counts: map[string]int{}, ran: map[string]int64{}}
	kind := goKinds{}
	gSince := map[trace.GoID]trace.Time{}
	writes := 0
	lastP := procOf{}
	err = eachTransition(tr, func(ev trace.Event, st trace.StateTransition) {
		t := ev.Time()
		switch st.Resource.Kind {
		case trace.ResourceProc:
			if from, to := st.Proc(); from == trace.ProcIdle && to == trace.ProcRunning {
				ec.counts["procs started"]++
			}
		case trace.ResourceGoroutine:
			g := st.Resource.Goroutine()
			from, to := st.Goroutine()
			kind.note(ev, st)
			if s, ok := gSince[g]; ok && from == trace.GoRunning {
				ec.ran[kind[g]] += int64(t - s)
				delete(gSince, g)
			}
			if to == trace.GoNotExist {
				delete(lastP, g)
			}
			switch {
			case to == trace.GoRunning:
				gSince[g] = t
				if lastP.moved(g, ev.Proc()) {
					ec.counts["resumed on another P: "+kind[g]]++
				}
			case from == trace.GoRunning && to == trace.GoRunnable:
				ec.counts["yield: "+frames(ev.Stack(), 3)]++
			case from == trace.GoNotExist:
				created := frames(st.Stack, 1)
				ec.counts["create: "+created+"  by: "+by(ev)]++
				if strings.HasSuffix(created, "http.(*http2serverConn).runHandler") {
					ec.calls++
				}
			case from == trace.GoWaiting && to == trace.GoRunnable:
				ec.counts["unblock: "+kind[g]+"  by: "+by(ev)]++
			case to == trace.GoWaiting:
				ec.counts["block("+st.Reason+"): "+frames(ev.Stack(), 4)]++
			case to == trace.GoSyscall:
				stk := frames(ev.Stack(), 64)
				ec.counts["syscall: "+frames(ev.Stack(), 4)]++
				if strings.Contains(stk, "net.(*conn).Write") {
					writes++
					if strings.Contains(stk, "http.(*conn).serve") && !strings.Contains(stk, "http2") {
						ec.calls++
					}
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if ec.calls == 0 {
		ec.calls = writes
	}
	return ec, nil
}

// eachTransition calls fn with each state transition of the trace in r,
// in order.
func eachTransition(r *trace.Reader, fn func(trace.Event, trace.StateTransition)) error {
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if ev.Kind() == trace.EventStateTransition {
			fn(ev, ev.StateTransition())
		}
	}
}

// procOf is the P each goroutine last ran on. On two Ps, a goroutine that
// resumes on the other P than it last ran on brings the data it works on
// from the other core's cache (BENCHMARKS.md 24).
type procOf map[trace.GoID]trace.ProcID

// moved records that g runs on p and reports whether it last ran on
// another P.
func (m procOf) moved(g trace.GoID, p trace.ProcID) bool {
	last, ok := m[g]
	m[g] = p
	return ok && last != p
}

// goKinds are the kinds of goroutines ([kindOf]), learnt from their
// transitions: the stack a goroutine is created with, or the first that
// names a kind.
type goKinds map[trace.GoID]string

// note learns the kind of the goroutine of st, a goroutine's transition,
// if not known yet.
func (k goKinds) note(ev trace.Event, st trace.StateTransition) {
	g := st.Resource.Goroutine()
	from, _ := st.Goroutine()
	if from != trace.GoNotExist && k[g] != "" {
		return
	}
	if kind := kindOf(st.Stack); kind != "" {
		k[g] = kind
	} else if kind := kindOf(ev.Stack()); kind != "" && from != trace.GoNotExist {
		k[g] = kind
	}
}

// by names what made an event happen: the stack of the goroutine that
// did, or the runtime (the network poller, a timer) when none did.
func by(ev trace.Event) string {
	if s := frames(ev.Stack(), 5); s != "" {
		return s
	}
	if ev.Goroutine() == trace.NoGoroutine {
		return "(runtime: no goroutine)"
	}
	return "(no stack)"
}

// frames returns the innermost n functions of s, innermost first, without
// their packages' paths.
func frames(s trace.Stack, n int) string {
	var fs []string
	for f := range s.Frames() {
		fn := f.Func
		if i := strings.LastIndex(fn, "/"); i >= 0 {
			fn = fn[i+1:]
		}
		fs = append(fs, fn)
		if len(fs) == n {
			break
		}
	}
	return strings.Join(fs, " < ")
}

// print writes the counts of at least min a call, the most frequent
// first, and the time a call of each kind of goroutine.
func (ec *eventCounts) print(w io.Writer, min float64) error {
	if ec.calls == 0 {
		return errors.New("no call in the trace: no handler goroutine, no socket write")
	}
	n := float64(ec.calls)
	fmt.Fprintf(w, "calls %d; each a call:\n", ec.calls)
	keys := slices.Collect(maps.Keys(ec.counts))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(ec.counts[b], ec.counts[a]), cmp.Compare(a, b)) })
	for _, k := range keys {
		if v := float64(ec.counts[k]) / n; v >= min {
			fmt.Fprintf(w, "%7.2f  %s\n", v, k)
		}
	}
	fmt.Fprintln(w, "µs a call, running:")
	keys = slices.Collect(maps.Keys(ec.ran))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(ec.ran[b], ec.ran[a]), cmp.Compare(a, b)) })
	for _, k := range keys {
		if v := float64(ec.ran[k]) / n / 1e3; v >= 0.05 {
			fmt.Fprintf(w, "%7.2f  %s\n", v, k)
		}
	}
	return nil
}
