//go:build unix

// Command footprint measures what a served process costs at rest: the time
// from exec to ready, the resident memory (/proc/PID/status), the Go heap
// after a collection and the goroutines, at idle after the start, after
// calls, and (for the example) after more subscriptions on its embedded
// NATS server. It runs benchserver variants (-benchserver, built with the
// -stats flag it reads the heap through) and the example (-example, read
// through its admin port with KIT_PPROF=true), -rounds times each, and
// prints one Markdown row per run and then the medians. BENCHMARKS.md
// section 12 has the commands.
//
//	go build -o bin/benchserver ./internal/bench/benchserver
//	go build -o bin/example ./cmd/example
//	go run ./internal/bench/footprint -benchserver bin/benchserver -example bin/example
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// sample is the process's memory at one moment.
type sample struct {
	RSS, RSSAnon, RSSFile     uint64 // /proc/PID/status VmRSS, RssAnon, RssFile
	HeapInuse, HeapAlloc, Sys uint64 // runtime.MemStats after a collection
	StackInuse                uint64
	Goroutines                int
}

// run is one process's life: its start and its samples.
type run struct {
	Target    string
	Round     int
	Ready     time.Duration // exec to "listening on" (benchserver) or the "serving" line (example)
	ReadyZ    time.Duration // exec to /readyz 200 (example only)
	Idle      sample
	Calls     sample
	Subs      sample        // example with -subscriptions only
	Settled   sample        // -settle after the last phase, when set
	FirstCall time.Duration // the first call's time, from the client
	Goroutine string        // the goroutine profile at idle (last round's is printed with -goroutines)
}

func main() {
	benchserver := flag.String("benchserver", "bin/benchserver", "benchserver binary (empty: none)")
	example := flag.String("example", "bin/example", "example binary (empty: none)")
	variants := flag.String("variants", "connect,kit-nochain,kit,grpc-go", "benchserver variants")
	rounds := flag.Int("rounds", 5, "runs of each target")
	calls := flag.Int("calls", 1000, "calls per protocol after the idle sample")
	subs := flag.Int("subscriptions", 4, "subscriptions (each on a topic of its own) added to the example's embedded NATS after the calls")
	idle := flag.Duration("idle", 2*time.Second, "wait after ready before the idle sample")
	rpc := flag.String("rpc", "ping", `benchserver's calls: "ping" (PingService.Ping, whose messages carry protovalidate rules) or "health" (grpc.health.v1.Health/Check, whose do not; kit variants only)`)
	settle := flag.Duration("settle", 0, "if set, wait this long after the last phase and sample again (caches expired, memory returned to the OS)")
	goroutines := flag.Bool("goroutines", false, "print each target's goroutines at idle")
	profiles := flag.String("heapprofiles", "", "write heap profiles to this directory: benchserver's (-heapprofile) at each sample, the example's at each sample")
	flag.Parse()

	var runs []run
	for round := range *rounds {
		if *benchserver != "" {
			for _, v := range strings.Split(*variants, ",") {
				r, err := runBenchserver(*benchserver, v, *rpc, *calls, *idle, *settle, profilePrefix(*profiles, v, round))
				if err != nil {
					fail(fmt.Errorf("%s: %w", v, err))
				}
				r.Round = round
				runs = append(runs, r)
			}
		}
		if *example != "" {
			dir, err := os.MkdirTemp("", "footprint-nats-")
			if err != nil {
				fail(err)
			}
			for _, start := range []string{"cold", "warm"} {
				r, err := runExample(*example, dir, *calls, *subs, *idle, *settle, profilePrefix(*profiles, "example-"+start, round))
				if err != nil {
					fail(fmt.Errorf("example (%s): %w", start, err))
				}
				r.Target, r.Round = "example-"+start, round
				runs = append(runs, r)
			}
			os.RemoveAll(dir)
		}
	}
	report(os.Stdout, runs, *goroutines)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "footprint:", err)
	os.Exit(1)
}

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

func runExample(path, dataDir string, calls, subs int, idle, settle time.Duration, profile string) (run, error) {
	var r run
	addr, admin := freeAddr(), freeAddr()
	env := []string{
		"KIT_ADDR=" + addr, "KIT_ADMIN_ADDR=" + admin, "KIT_PPROF=true", "KIT_LOG_FORMAT=json",
		"NATS_DATA_DIR=" + filepath.Join(dataDir, "nats"),
	}
	if profile != "" {
		env = append(env, "GODEBUG=memprofilerate=4096") // as benchserver's -heapprofile
	}
	natsAddr := ""
	if subs > 0 {
		natsAddr = freeAddr()
		env = append(env, "NATS_LISTEN="+natsAddr)
	}
	p, err := startProcess(path, env)
	if err != nil {
		return r, err
	}
	defer p.stop()
	readyz := make(chan time.Duration, 1)
	go func() {
		for {
			resp, err := http.Get("http://" + admin + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					readyz <- time.Since(p.start)
					return
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	if _, r.Ready, err = p.waitLine(`"msg":"serving"`, 60*time.Second); err != nil {
		return r, err
	}
	go func() {
		for range p.lines {
		}
	}()
	select {
	case r.ReadyZ = <-readyz:
	case <-time.After(60 * time.Second):
		return r, errors.New("/readyz not 200 within 60s")
	}
	time.Sleep(idle)
	if r.Idle, r.Goroutine, err = exampleSample(p, admin, profile); err != nil {
		return r, err
	}
	ctx := context.Background()
	grpcClient := examplev1connect.NewProfileServiceClient(h2cClient(), "http://"+addr, connect.WithGRPC())
	ids := make([]string, calls+1)
	start := time.Now()
	if _, err := grpcClient.GetProfile(ctx, connect.NewRequest(&examplev1.GetProfileRequest{Id: "00000000-0000-4000-8000-000000000000"})); connect.CodeOf(err) != connect.CodeNotFound {
		return r, fmt.Errorf("first call: %w", err)
	}
	r.FirstCall = time.Since(start)
	if err := callN(calls, func(i int) error {
		resp, err := grpcClient.CreateProfile(ctx, connect.NewRequest(&examplev1.CreateProfileRequest{
			Name: fmt.Sprintf("user %d", i), Email: fmt.Sprintf("user%d@example.com", i),
		}))
		if err == nil {
			ids[i] = resp.Msg.GetProfile().GetId()
		}
		return err
	}); err != nil {
		return r, err
	}
	jsonClient := examplev1connect.NewProfileServiceClient(http1Client(), "http://"+addr, connect.WithProtoJSON())
	if err := callN(calls, func(i int) error {
		_, err := jsonClient.GetProfile(ctx, connect.NewRequest(&examplev1.GetProfileRequest{Id: ids[i]}))
		return err
	}); err != nil {
		return r, err
	}
	time.Sleep(idle)
	if r.Calls, _, err = exampleSample(p, admin, profile); err != nil {
		return r, err
	}
	if subs > 0 {
		stopSubs, err := subscribe(natsAddr, subs)
		if err != nil {
			return r, err
		}
		defer stopSubs()
		time.Sleep(idle)
		if r.Subs, _, err = exampleSample(p, admin, profile); err != nil {
			return r, err
		}
	}
	if settle > 0 {
		time.Sleep(settle)
		r.Settled, _, err = exampleSample(p, admin, profile)
	}
	return r, err
}

// subscribe runs n subscriptions of a topic each against the example's
// embedded server, through natsjs as another service would, publishes 10
// messages to each and waits until they are handled: the example's server
// then holds n streams and n durable consumers more.
func subscribe(natsAddr string, n int) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	bus, err := natsjs.New(ctx, natsjs.Config{URL: "nats://" + natsAddr, Name: "footprint"})
	if err != nil {
		cancel()
		return nil, err
	}
	stop = func() { cancel(); bus.Close() }
	var handled sync.WaitGroup
	for i := range n {
		topic := fmt.Sprintf("footprint.topic%d", i)
		handled.Add(10)
		sub, err := pubsub.NewSubscriber(bus, topic, "footprint", func(context.Context, *pingv1.PingRequest) error {
			handled.Done()
			return nil
		})
		if err != nil {
			stop()
			return nil, err
		}
		go func() { _ = sub.Run(ctx) }()
		pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, topic)
		if err != nil {
			stop()
			return nil, err
		}
		for j := range 10 {
			if err := pub.Publish(ctx, &pingv1.PingRequest{Number: int64(j)}); err != nil {
				stop()
				return nil, err
			}
		}
	}
	done := make(chan struct{})
	go func() { handled.Wait(); close(done) }()
	select {
	case <-done:
		return stop, nil
	case <-time.After(60 * time.Second):
		stop()
		return nil, errors.New("subscriptions did not handle their messages within 60s")
	}
}

var (
	heapLine      = regexp.MustCompile(`(?m)^# (HeapInuse|HeapAlloc|Sys|Stack) = (\d+)`)
	goroutineLine = regexp.MustCompile(`^goroutine profile: total (\d+)`)
)

// exampleSample reads the example's heap after a collection
// (/debug/pprof/heap?gc=1&debug=1) and goroutines through its admin port.
// The goroutine that serves the profile's request is left out.
func exampleSample(p *process, admin, profile string) (sample, string, error) {
	var s sample
	if profile != "" {
		pb, err := get("http://" + admin + "/debug/pprof/heap?gc=1")
		if err != nil {
			return s, "", err
		}
		p.profiles++
		if err := os.WriteFile(fmt.Sprintf("%s-%d.pb.gz", profile, p.profiles), []byte(pb), 0o644); err != nil {
			return s, "", err
		}
	}
	heap, err := get("http://" + admin + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return s, "", err
	}
	for _, m := range heapLine.FindAllStringSubmatch(heap, -1) {
		v, _ := strconv.ParseUint(m[2], 10, 64)
		switch m[1] {
		case "HeapInuse":
			s.HeapInuse = v
		case "HeapAlloc":
			s.HeapAlloc = v
		case "Sys":
			s.Sys = v
		case "Stack":
			s.StackInuse = v
		}
	}
	prof, err := get("http://" + admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return s, "", err
	}
	m := goroutineLine.FindStringSubmatch(prof)
	if m == nil {
		return s, "", errors.New("no goroutine count")
	}
	g, _ := strconv.Atoi(m[1])
	s.Goroutines = g - 1
	return s, prof, readRSS(p.cmd.Process.Pid, &s)
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}

func mb(v uint64) string { return fmt.Sprintf("%.1f", float64(v)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

// report prints every run, then each target's medians.
func report(w io.Writer, runs []run, goroutines bool) {
	fmt.Fprintln(w, "| target | round | ready ms | /readyz ms | first call ms | phase | VmRSS MiB | RssAnon | RssFile | HeapInuse MiB | HeapAlloc | Sys | stacks | goroutines |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range runs {
		for _, ph := range phases(r) {
			s := ph.s
			fmt.Fprintf(w, "| %s | %d | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", r.Target, r.Round, ms(r.Ready), ms(r.ReadyZ), float64(r.FirstCall)/1e6,
				ph.name, mb(s.RSS), mb(s.RSSAnon), mb(s.RSSFile), mb(s.HeapInuse), mb(s.HeapAlloc), mb(s.Sys), mb(s.StackInuse), s.Goroutines)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Medians:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | runs | ready ms | /readyz ms | first call ms | phase | VmRSS MiB | RssAnon | HeapInuse MiB | HeapAlloc | Sys | goroutines |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	var targets []string
	for _, r := range runs {
		if !slices.Contains(targets, r.Target) {
			targets = append(targets, r.Target)
		}
	}
	for _, t := range targets {
		var of []run
		for _, r := range runs {
			if r.Target == t {
				of = append(of, r)
			}
		}
		ready := median(of, func(r run) float64 { return float64(r.Ready) })
		readyz := median(of, func(r run) float64 { return float64(r.ReadyZ) })
		first := median(of, func(r run) float64 { return float64(r.FirstCall) })
		for i, ph := range phases(of[0]) {
			get := func(f func(sample) uint64) string {
				return mb(uint64(median(of, func(r run) float64 { return float64(f(phases(r)[i].s)) })))
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %.0f |\n", t, len(of), ms(time.Duration(ready)), ms(time.Duration(readyz)), first/1e6, ph.name,
				get(func(s sample) uint64 { return s.RSS }), get(func(s sample) uint64 { return s.RSSAnon }), get(func(s sample) uint64 { return s.HeapInuse }),
				get(func(s sample) uint64 { return s.HeapAlloc }), get(func(s sample) uint64 { return s.Sys }),
				median(of, func(r run) float64 { return float64(phases(r)[i].s.Goroutines) }))
		}
		if goroutines {
			fmt.Fprintf(w, "\n%s at idle:\n\n%s\n", t, of[len(of)-1].Goroutine)
		}
	}
}

type phase struct {
	name string
	s    sample
}

func phases(r run) []phase {
	ps := []phase{{"idle", r.Idle}, {"calls", r.Calls}}
	if r.Subs.RSS != 0 {
		ps = append(ps, phase{"subscriptions", r.Subs})
	}
	if r.Settled.RSS != 0 {
		ps = append(ps, phase{"settled", r.Settled})
	}
	return ps
}

func median(runs []run, f func(run) float64) float64 {
	vs := make([]float64, len(runs))
	for i, r := range runs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}
