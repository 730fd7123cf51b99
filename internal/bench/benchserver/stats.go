package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
)

// memStats is what -stats writes on SIGUSR1, after a collection: the Go
// heap and the goroutines, as internal/bench/footprint reads them.
type memStats struct {
	HeapInuse  uint64 // runtime.MemStats.HeapInuse
	HeapAlloc  uint64 // runtime.MemStats.HeapAlloc: live bytes after the collection
	HeapSys    uint64 // runtime.MemStats.HeapSys
	StackInuse uint64 // runtime.MemStats.StackInuse
	Sys        uint64 // runtime.MemStats.Sys: all the runtime got from the OS
	Goroutines int    // runtime.NumGoroutine, less the one that answers SIGUSR1
}

// serveStats answers every SIGUSR1 with a line "memstats {json}" on w,
// followed by the goroutine profile (debug=1), so that a tool can read a
// running variant's heap without an admin port, which bare connect-go and
// grpc-go have not. It costs the process one goroutine, which the count
// leaves out. With a profile prefix, each answer also writes the heap's
// profile to prefix-N.pb.gz (N counting from 1).
func serveStats(w io.Writer, profile string) {
	if statsSignal == nil {
		fmt.Fprintln(w, "memstats: -stats needs SIGUSR1, which this system has not")
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, statsSignal)
	go func() {
		n := 0
		for range sig {
			runtime.GC()
			if profile != "" {
				n++
				if err := writeProfile(fmt.Sprintf("%s-%d.pb.gz", profile, n)); err != nil {
					fmt.Fprintln(w, "memstats:", err)
				}
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			line, _ := json.Marshal(memStats{
				HeapInuse:  ms.HeapInuse,
				HeapAlloc:  ms.HeapAlloc,
				HeapSys:    ms.HeapSys,
				StackInuse: ms.StackInuse,
				Sys:        ms.Sys,
				Goroutines: runtime.NumGoroutine() - 1,
			})
			fmt.Fprintf(w, "memstats %s\n", line)
			_ = pprof.Lookup("goroutine").WriteTo(w, 1)
			fmt.Fprintln(w, "memstats end")
		}
	}()
}

// writeProfile writes the heap's profile to path.
func writeProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
