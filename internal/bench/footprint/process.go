//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// process is a started target whose output is scanned for lines.
type process struct {
	cmd      *exec.Cmd
	start    time.Time
	lines    chan string // stdout and stderr, merged
	profiles int         // heap profiles written
}

func startProcess(path string, env []string, args ...string) (*process, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, lines: make(chan string, 1024)}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for _, r := range []io.Reader{out, errOut} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
		}()
	}
	go func() { wg.Wait(); close(p.lines) }()
	return p, nil
}

// waitLine returns the first line that contains s and the time since exec.
func (p *process) waitLine(s string, timeout time.Duration) (string, time.Duration, error) {
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return "", 0, fmt.Errorf("exited before %q", s)
			}
			if strings.Contains(line, s) {
				return line, time.Since(p.start), nil
			}
		case <-deadline:
			return "", 0, fmt.Errorf("no %q within %s", s, timeout)
		}
	}
}

// stop ends the process with SIGTERM and waits for it.
func (p *process) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		for range p.lines {
		}
	}()
	return p.cmd.Wait()
}

// readRSS reads the resident set of pid.
func readRSS(pid int, s *sample) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		kb, _ := strconv.ParseUint(f[0], 10, 64)
		switch name {
		case "VmRSS":
			s.RSS = kb << 10
		case "RssAnon":
			s.RSSAnon = kb << 10
		case "RssFile":
			s.RSSFile = kb << 10
		}
	}
	return nil
}

var memstatsLine = regexp.MustCompile(`^memstats (\{.*\})$`)

// benchserverSample asks benchserver -stats for its heap (SIGUSR1).
func benchserverSample(p *process) (sample, string, error) {
	var s sample
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return s, "", err
	}
	line, _, err := p.waitLine("memstats {", 10*time.Second)
	if err != nil {
		return s, "", err
	}
	m := memstatsLine.FindStringSubmatch(line)
	if m == nil {
		return s, "", fmt.Errorf("bad line %q", line)
	}
	for _, f := range []struct {
		name string
		dst  *uint64
	}{{"HeapInuse", &s.HeapInuse}, {"HeapAlloc", &s.HeapAlloc}, {"Sys", &s.Sys}, {"StackInuse", &s.StackInuse}} {
		*f.dst = jsonUint(m[1], f.name)
	}
	s.Goroutines = int(jsonUint(m[1], "Goroutines"))
	var prof strings.Builder
	for line := range p.lines {
		if line == "memstats end" {
			break
		}
		prof.WriteString(line + "\n")
	}
	return s, prof.String(), readRSS(p.cmd.Process.Pid, &s)
}

func jsonUint(js, name string) uint64 {
	m := regexp.MustCompile(`"` + name + `":(\d+)`).FindStringSubmatch(js)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

// profilePrefix names a run's heap profiles in dir, or is empty without dir.
func profilePrefix(dir, target string, round int) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, fmt.Sprintf("%s-%d", target, round))
}

func runBenchserver(path, variant, rpc string, calls int, idle, settle time.Duration, profile string) (run, error) {
	r := run{Target: variant}
	args := []string{"-variant", variant, "-stats"}
	if profile != "" {
		args = append(args, "-heapprofile", profile)
	}
	p, err := startProcess(path, nil, args...)
	if err != nil {
		return r, err
	}
	defer p.stop()
	line, ready, err := p.waitLine("listening on ", 30*time.Second)
	if err != nil {
		return r, err
	}
	r.Ready = ready
	addr := strings.TrimPrefix(line[strings.Index(line, "listening on "):], "listening on ")
	time.Sleep(idle)
	if r.Idle, r.Goroutine, err = benchserverSample(p); err != nil {
		return r, err
	}
	call, err := caller(rpc, "http://"+addr)
	if err != nil {
		return r, err
	}
	start := time.Now()
	if err := call(h2cClient(), connect.WithGRPC(), 0); err != nil {
		return r, err
	}
	r.FirstCall = time.Since(start)
	grpcClient := h2cClient()
	if err := callN(calls, func(i int) error { return call(grpcClient, connect.WithGRPC(), i) }); err != nil {
		return r, err
	}
	if variant != "grpc-go" {
		jsonClient := http1Client()
		if err := callN(calls, func(i int) error { return call(jsonClient, connect.WithProtoJSON(), i) }); err != nil {
			return r, err
		}
	}
	time.Sleep(idle)
	if r.Calls, _, err = benchserverSample(p); err != nil || settle == 0 {
		return r, err
	}
	time.Sleep(settle)
	r.Settled, _, err = benchserverSample(p)
	return r, err
}

// caller returns a function that makes call i of rpc to url over client
// with protocol.
func caller(rpc, url string) (func(client *http.Client, protocol connect.ClientOption, i int) error, error) {
	ctx := context.Background()
	switch rpc {
	case "ping":
		return func(client *http.Client, protocol connect.ClientOption, i int) error {
			c := pingv1connect.NewPingServiceClient(client, url, protocol)
			_, err := c.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: int64(i), Text: "footprint"}))
			return err
		}, nil
	case "health":
		return func(client *http.Client, protocol connect.ClientOption, _ int) error {
			c := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](client, url+"/grpc.health.v1.Health/Check", protocol)
			_, err := c.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
			return err
		}, nil
	}
	return nil, fmt.Errorf("unknown -rpc %q", rpc)
}

// callN makes n calls, 10 at a time.
func callN(n int, call func(i int) error) error {
	var next atomic.Int64
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			for {
				i := int(next.Add(1))
				if i > n {
					errs <- nil
					return
				}
				if err := call(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
	for range 10 {
		err = errors.Join(err, <-errs)
	}
	return err
}

func h2cClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols}}
}

func http1Client() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 10}}
}

// freeAddr returns a loopback address free at the time.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
