package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a running benchserver.
type server struct {
	cmd  *exec.Cmd
	addr string
}

// startServer starts benchserver -variant variant with extra arguments,
// pinned to CPU 0 if pin, and waits until it listens. A variant written
// NAME@BINARY runs that other benchserver binary: a build from before a
// change, measured in the same run as the current one.
func startServer(ctx context.Context, bin, variant string, pin, useTLS bool, extra []string) (*server, error) {
	if name, other, ok := strings.Cut(variant, "@"); ok {
		variant, bin = name, other
	}
	args := append([]string{bin, "-variant", variant, "-tls=" + strconv.FormatBool(useTLS)}, extra...)
	if pin {
		// taskset execs the server: the PID is the server's. Go sizes
		// GOMAXPROCS from the affinity mask, so the server runs with 1.
		args = append([]string{"taskset", "-c", "0"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		s.stop()
		return nil, fmt.Errorf("%s did not start: %q, %v", strings.Join(args, " "), line, err)
	}
	s.addr = addr
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop shuts the server down gracefully and waits for it.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// clockTick is the unit of /proc/PID/stat's utime and stime (USER_HZ,
// 100 on Linux whatever the kernel's HZ).
const clockTick = 10 * time.Millisecond

// cpuTime returns the process's user plus system CPU time so far, all
// threads included.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// syscalls counts system calls.
type syscalls struct{ all, read, write, futex, epoll float64 }

// perfEvents are the tracepoints counted, in the order of syscalls' fields.
var perfEvents = []string{
	"raw_syscalls:sys_enter",
	"syscalls:sys_enter_read",
	"syscalls:sys_enter_write",
	"syscalls:sys_enter_futex",
	"syscalls:sys_enter_epoll_pwait",
}

func (s syscalls) per(calls int64) syscalls {
	n := float64(max(calls, 1))
	return syscalls{s.all / n, s.read / n, s.write / n, s.futex / n, s.epoll / n}
}

// perfRun is perf stat attached to a process.
type perfRun struct {
	cmd *exec.Cmd
	out string
}

func startPerf(ctx context.Context, pid int, out string) (*perfRun, error) {
	cmd := exec.CommandContext(ctx, "perf", "stat", "-x", ",", "-o", out,
		"-e", strings.Join(perfEvents, ","), "-p", strconv.Itoa(pid))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf (install linux-perf, or run with -syscalls=false): %w", err)
	}
	time.Sleep(200 * time.Millisecond) // let perf attach before the load starts
	return &perfRun{cmd: cmd, out: out}, nil
}

// stop stops perf and reads its counts.
func (p *perfRun) stop() (syscalls, error) {
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()
	b, err := os.ReadFile(p.out)
	if err != nil {
		return syscalls{}, err
	}
	counts := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		if n, err := strconv.ParseFloat(f[0], 64); err == nil {
			counts[f[2]] = n
		}
	}
	if _, ok := counts[perfEvents[0]]; !ok {
		return syscalls{}, fmt.Errorf("perf counted nothing (tracepoints unavailable? run with -syscalls=false):\n%s", b)
	}
	return syscalls{counts[perfEvents[0]], counts[perfEvents[1]], counts[perfEvents[2]], counts[perfEvents[3]], counts[perfEvents[4]]}, nil
}
