package kit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// TestStressShutdownUnderMixedLoad shuts servers down while clients of
// every protocol make calls of every stream type, some of them
// misbehaving (cancelling mid-call, closing their connection mid-stream,
// sending deadlines already past, reading nothing). Every call must end,
// a call that succeeds must have its whole answer, Run must return, and
// no goroutine may outlive the server and its clients.
//
// Not parallel: it counts goroutines, and the testing package runs a
// sequential test while no parallel test runs.
func TestStressShutdownUnderMixedLoad(t *testing.T) {
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			base := countGoroutines()
			stressShutdown(t, kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff, NoFrameBatching: !batching, ShutdownTimeout: 2 * time.Second})
			if leaked := waitGoroutines(base, 10*time.Second); leaked != "" {
				t.Errorf("goroutines left after shutdown (baseline %d):\n%s", base, leaked)
			}
		})
	}
}

// waitGoroutines waits until at most base goroutines run, not counting
// os/signal's loop (started once per process, by the first server), and
// returns the stacks of all of them if that does not happen within d.
func waitGoroutines(base int, d time.Duration) string {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if countGoroutines() <= base {
			return ""
		}
	}
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func countGoroutines() int {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	return strings.Count(stacks, "\n\ngoroutine ") + 1 - strings.Count(stacks, "os/signal.loop")
}

type stressCounts struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	codes      map[string]int
}

func (c *stressCounts) add(err error) {
	if err == nil {
		c.ok.Add(1)
		return
	}
	c.failed.Add(1)
	c.mu.Lock()
	c.codes[connect.CodeOf(err).String()]++
	c.mu.Unlock()
}

func stressShutdown(t *testing.T, cfg kit.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := kit.New(cfg, kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	kit.SetSendStall(srv, 300*time.Millisecond)
	// The calls cut at ShutdownTimeout get 10s, not 1s, to return:
	// pingServer's CountUp ignores its context and goes on sending to a
	// client that reads, so the shutdown ends it by closing its connection
	// at half the grace, and under -race on a loaded machine it took more
	// than the other half to return after that (Run reported handlers
	// still running). A handler that the close does not end still holds
	// Run 10s and fails the test.
	kit.SetCutGrace(srv, 10*time.Second)
	srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(runCtx) }()
	addr := srv.Addr().String()
	url := "http://" + addr

	// Every client's connections are tracked, so that misbehaving calls
	// can close theirs and the test can close all of them at its end.
	var connsMu sync.Mutex
	var conns []net.Conn
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err == nil {
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		}
		return c, err
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h1 := &http.Client{Transport: &http.Transport{DialContext: dial}}
	h2 := &http.Client{Transport: &http.Transport{DialContext: dial, Protocols: &h2c}}
	type proto struct {
		name   string
		client *http.Client
		opts   []connect.ClientOption
	}
	protos := []proto{
		{"grpc", h2, []connect.ClientOption{connect.WithGRPC()}},
		{"grpcweb/h2c", h2, []connect.ClientOption{connect.WithGRPCWeb()}},
		{"grpcweb/http1", h1, []connect.ClientOption{connect.WithGRPCWeb()}},
		{"connect/h2c", h2, nil},
		{"connect/http1", h1, nil},
		{"connect+json/h2c", h2, []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect+json/http1", h1, []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect-get/http1", h1, []connect.ClientOption{connect.WithHTTPGet()}},
		{"connect-get/h2c", h2, []connect.ClientOption{connect.WithHTTPGet(), connect.WithProtoJSON()}},
	}
	gconn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer gconn.Close()

	counts := &stressCounts{codes: map[string]int{}}
	var wrong atomic.Int64
	wrongf := func(format string, args ...any) {
		if wrong.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	// Readers that stopped reading are released at the end.
	stalled := make(chan struct{})

	oneCall := func(rng *rand.Rand) {
		p := protos[rng.IntN(len(protos))]
		client := pingv1connect.NewPingServiceClient(p.client, url, p.opts...)
		callCtx, callCancel := context.WithCancel(ctx)
		defer callCancel()
		misbehave := rng.IntN(6) // 0: cancel mid-call, 1: short deadline, 2: stop reading
		switch misbehave {
		case 0:
			time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, callCancel)
		case 1:
			callCtx, callCancel = context.WithTimeout(callCtx, time.Duration(rng.IntN(3000))*time.Microsecond)
			defer callCancel()
		}
		n := int64(1 + rng.IntN(50))
		switch kind := rng.IntN(5); {
		case kind == 0 || strings.HasPrefix(p.name, "connect-get"):
			res, err := client.Ping(callCtx, connect.NewRequest(&pingv1.PingRequest{Number: n, Text: strings.Repeat("x", rng.IntN(20000))}))
			if err == nil && res.Msg.GetNumber() != n {
				wrongf("%s Ping(%d) = %d", p.name, n, res.Msg.GetNumber())
			}
			counts.add(err)
		case kind == 1:
			stream := client.Sum(callCtx)
			var want int64
			for i := int64(1); i <= n; i++ {
				if stream.Send(&pingv1.SumRequest{Number: i}) != nil {
					break
				}
				want += i
			}
			res, err := stream.CloseAndReceive()
			if err == nil && res.Msg.GetSum() != want {
				wrongf("%s Sum = %d, want %d", p.name, res.Msg.GetSum(), want)
			}
			counts.add(err)
		case kind == 2:
			if misbehave == 2 {
				n = 10000 // more than the sockets and windows hold
			}
			stream, err := client.CountUp(callCtx, connect.NewRequest(&pingv1.CountUpRequest{Number: n}))
			if err != nil {
				counts.add(err)
				return
			}
			var got int64
			for stream.Receive() {
				got++
				if stream.Msg().GetNumber() != got {
					wrongf("%s CountUp: message %d is %d", p.name, got, stream.Msg().GetNumber())
					break
				}
				if misbehave == 2 && got == 1 {
					// Past the server's send stall.
					select {
					case <-stalled:
					case <-time.After(time.Duration(rng.IntN(1000)) * time.Millisecond):
					}
				}
			}
			err = stream.Err()
			if err == nil && got != n {
				wrongf("%s CountUp(%d) ended cleanly after %d messages", p.name, n, got)
			}
			_ = stream.Close()
			counts.add(err)
		case kind == 3:
			stream := client.CumSum(callCtx)
			if !strings.Contains(p.name, "h2c") && p.name != "grpc" {
				// Bidi streams need HTTP/2; over HTTP/1.1 the server
				// answers with an error, also worth a call. The
				// request must be closed before the response is read:
				// net/http's client waits for the request's body to end
				// when the server closes the connection first.
				_ = stream.Send(&pingv1.CumSumRequest{Number: 1})
				_ = stream.CloseRequest()
				_, err := stream.Receive()
				_ = stream.CloseResponse()
				counts.add(err)
				return
			}
			var sum int64
			var err error
			for i := int64(1); i <= n; i++ {
				if err = stream.Send(&pingv1.CumSumRequest{Number: i}); err != nil {
					break
				}
				sum += i
				var res *pingv1.CumSumResponse
				if res, err = stream.Receive(); err != nil {
					break
				}
				if res.GetSum() != sum {
					wrongf("%s CumSum = %d, want %d", p.name, res.GetSum(), sum)
				}
				if misbehave == 2 && i == 2 {
					// Close the connection mid-stream.
					connsMu.Lock()
					if len(conns) > 0 {
						_ = conns[rng.IntN(len(conns))].Close()
					}
					connsMu.Unlock()
				}
			}
			_ = stream.CloseRequest()
			if err == nil {
				_, err = stream.Receive()
				if errors.Is(err, io.EOF) {
					err = nil
				}
			}
			_ = stream.CloseResponse()
			counts.add(err)
		default:
			// Raw requests with deadlines already past, and a
			// grpc-go call.
			switch rng.IntN(3) {
			case 0:
				counts.add(rawCall(callCtx, p.client, url, "application/grpc", "Grpc-Timeout", "1n"))
			case 1:
				counts.add(rawCall(callCtx, h1, url, "application/proto", "Connect-Timeout-Ms", "0"))
			default:
				res := new(pingv1.PingResponse)
				err := gconn.Invoke(callCtx, "/"+pingv1connect.PingServiceName+"/Ping", &pingv1.PingRequest{Number: n}, res)
				if err == nil && res.GetNumber() != n {
					wrongf("grpc-go Ping(%d) = %d", n, res.GetNumber())
				}
				counts.add(err)
			}
		}
	}

	const workers = 24
	var wg sync.WaitGroup
	var done atomic.Bool
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for !done.Load() {
				oneCall(rng)
			}
		})
	}
	// Load first, then the shutdown under it.
	for end := time.Now().Add(5 * time.Second); counts.ok.Load() < 300 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	stopped := time.Now()
	var runErr error
	select {
	case runErr = <-ran:
		t.Logf("Run returned %s after the stop", time.Since(stopped))
	case <-time.After(15 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return within 15s:\n%s", buf[:runtime.Stack(buf, true)])
	}
	done.Store(true)
	close(stalled)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("calls still running 10s after Run returned:\n%s", buf[:runtime.Stack(buf, true)])
	}
	// Streams of thousands of messages to slow readers outlast the
	// shutdown timeout (they take 4-6s under -race): cut, which this test
	// means to exercise, but no handler may outlive the cut.
	if runErr != nil && strings.Contains(runErr.Error(), "handlers") {
		t.Errorf("Run = %v", runErr)
	}
	t.Logf("Run = %v; %d calls answered, %d failed: %v", runErr, counts.ok.Load(), counts.failed.Load(), counts.codes)
	h1.CloseIdleConnections()
	h2.CloseIdleConnections()
	connsMu.Lock()
	for _, c := range conns {
		_ = c.Close()
	}
	connsMu.Unlock()
	_ = gconn.Close()
}

// rawCall sends a unary Ping by hand with one header of the caller's (a
// deadline connect's clients would not send) and reads the whole response.
func rawCall(ctx context.Context, client *http.Client, url, contentType, key, value string) error {
	var body []byte
	if contentType == "application/grpc" {
		body = []byte{0, 0, 0, 0, 2, 0x08, 0x07} // one message: number 7
	} else {
		body = []byte{0x08, 0x07}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/"+pingv1connect.PingServiceName+"/Ping", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(key, value)
	if contentType == "application/grpc" {
		req.Header.Set("Te", "trailers")
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, err = io.Copy(io.Discard, res.Body)
	return err
}

// TestStressStartStop starts and stops servers (admin listener on) in a
// loop, each stopped at a random point: before it serves, while clients
// connect, or with their idle HTTP/1.1 and h2c connections still open.
// Run must return nil each time, and no goroutine, file or port may
// outlive the loop.
//
// Not parallel: it counts goroutines and open files.
func TestStressStartStop(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 10
	}
	files := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(entries)
	}
	// One server first: what a process starts once (os/signal's loop,
	// pools) is not a leak.
	stressStartStop(t, 0)
	baseGoroutines, baseFiles := countGoroutines(), files()
	for round := range rounds {
		addr := stressStartStop(t, round)
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Fatalf("round %d: %s still accepts connections after Run returned", round, addr)
		}
	}
	if leaked := waitGoroutines(baseGoroutines, 10*time.Second); leaked != "" {
		t.Errorf("goroutines left after %d rounds (baseline %d):\n%s", rounds, baseGoroutines, leaked)
	}
	if n := files(); n > baseFiles {
		t.Errorf("%d open files after %d rounds, %d before", n, rounds, baseFiles)
	}
}

func stressStartStop(t *testing.T, round int) string {
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	srv.Go(func(ctx context.Context) error { <-ctx.Done(); return nil })
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	if round%5 == 1 {
		stop() // before it serves
	}
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h1 := &http.Client{Transport: &http.Transport{}}
	h2 := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	var calls sync.WaitGroup
	for i := range 8 {
		calls.Go(func() {
			hc := h1
			if i%2 == 0 {
				hc = h2
			}
			client := pingv1connect.NewPingServiceClient(hc, "http://"+addr)
			for j := range 5 {
				if j == 2 && i == 0 && round%5 == 2 {
					stop() // while clients call
				}
				// Calls during the shutdown may fail; the others not.
				if _, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil && ctx.Err() == nil {
					t.Errorf("round %d: Ping: %v", round, err)
				}
			}
		})
	}
	calls.Wait()
	stop() // with the clients' idle connections open
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("round %d: Run = %v", round, err)
		}
	case <-time.After(15 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("round %d: Run did not return:\n%s", round, buf[:runtime.Stack(buf, true)])
	}
	h1.CloseIdleConnections()
	h2.CloseIdleConnections()
	return addr
}
