package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// echoPing answers Ping, for the subscriber's calls to its own server.
type echoPing struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (echoPing) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

// TestStressRestartsUnderPublishing stops and starts a kit server with an
// embedded JetStream broker (on the same data directory) and a subscriber
// run by the server, again and again, while messages are published. The
// subscriber's handler fails at random, and handles a message by calling
// its own server through srv.ClientOptions(), which fails while the server
// shuts down. Every message whose publication was acknowledged must be
// handled, after however many restarts, and no goroutine or file may
// outlive the rounds.
//
// Not parallel: it counts goroutines and open files.
func TestStressRestartsUnderPublishing(t *testing.T) {
	t.Run("natsjs", func(t *testing.T) {
		dir := t.TempDir()
		stressRestarts(t, func() (pubsub.Broker, func() error) {
			bus, err := natsjs.New(context.Background(), natsjs.Config{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			return bus, bus.Close
		})
	})
	t.Run("mem", func(t *testing.T) {
		// One broker that outlives the servers, as an external one would.
		bus := mem.New()
		defer bus.Close()
		stressRestarts(t, func() (pubsub.Broker, func() error) {
			return bus, func() error { return nil }
		})
	})
}

func stressRestarts(t *testing.T, newBroker func() (pubsub.Broker, func() error)) {
	rounds := 6
	if testing.Short() {
		rounds = 3
	}
	var (
		mu      sync.Mutex
		acked   = map[int64]bool{}
		handled = map[int64]int{}
		next    atomic.Int64
	)
	handle := func(call pingv1connect.PingServiceClient) func(context.Context, *pingv1.PingRequest) error {
		return func(ctx context.Context, msg *pingv1.PingRequest) error {
			if rand.IntN(5) == 0 {
				return errors.New("random failure")
			}
			res, err := call.Ping(ctx, connect.NewRequest(msg))
			if err != nil {
				return err
			}
			if res.Msg.GetNumber() != msg.GetNumber() {
				return fmt.Errorf("ping %d answered %d", msg.GetNumber(), res.Msg.GetNumber())
			}
			mu.Lock()
			handled[msg.GetNumber()]++
			mu.Unlock()
			return nil
		}
	}
	baseGoroutines, baseFiles := countGoroutines(), countFiles(t)
	for round := range rounds {
		last := round == rounds-1
		func() {
			bus, closeBus := newBroker()
			defer func() {
				if err := closeBus(); err != nil {
					t.Errorf("round %d: closing the broker: %v", round, err)
				}
			}()
			srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff, ShutdownTimeout: 5 * time.Second},
				kit.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			srv.Mount(pingv1connect.NewPingServiceHandler(echoPing{}, srv.HandlerOptions()...))
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			var h2c http.Protocols
			h2c.SetUnencryptedHTTP2(true)
			hc := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
			defer hc.CloseIdleConnections()
			call := pingv1connect.NewPingServiceClient(hc, "http://"+srv.Addr().String(), srv.ClientOptions()...)
			opts := []pubsub.Option{
				pubsub.WithClientOptions(srv.ClientOptions()...),
				pubsub.WithHandlerOptions(srv.HandlerOptions()...),
				pubsub.WithLogger(srv.Logger()),
				pubsub.WithDelivery(pubsub.DeliveryConfig{
					Concurrency: 8, MaxAttempts: -1, AckWait: 2 * time.Second, DrainTimeout: time.Second,
					Backoff: pubsub.Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond},
				}),
			}
			pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "stress", opts...)
			if err != nil {
				t.Fatal(err)
			}
			sub, err := pubsub.NewSubscriber(bus, "stress", "s", handle(call), opts...)
			if err != nil {
				t.Fatal(err)
			}
			srv.Go(sub.Run)
			ctx, stop := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- srv.Run(ctx) }()

			// Publishers run until the server has stopped.
			var publishing sync.WaitGroup
			var done atomic.Bool
			for range 4 {
				publishing.Go(func() {
					// At most 1 000 a round: the in-memory broker takes
					// them faster than the handler's calls handle them.
					for !done.Load() {
						n := next.Add(1)
						if n > int64(1000*(round+1)) {
							next.Add(-1)
							break
						}
						if pub.Publish(context.Background(), &pingv1.PingRequest{Number: n}) == nil {
							mu.Lock()
							acked[n] = true
							mu.Unlock()
						}
					}
				})
			}
			if last {
				// Stop publishing, and wait for everything to be handled
				// for as long as handling goes on: what the rounds left
				// takes more than a minute under -race on a loaded machine
				// (the in-memory broker's backlog), while a message that is
				// lost leaves the count where it is.
				time.Sleep(100 * time.Millisecond)
				done.Store(true)
				publishing.Wait()
				prev, since := -1, time.Now()
				for ; time.Since(since) < 15*time.Second; time.Sleep(20 * time.Millisecond) {
					mu.Lock()
					missing := 0
					for n := range acked {
						if handled[n] == 0 {
							missing++
						}
					}
					mu.Unlock()
					if missing == 0 {
						break
					}
					if missing != prev {
						prev, since = missing, time.Now()
					}
				}
			} else {
				time.Sleep(time.Duration(50+rand.IntN(300)) * time.Millisecond)
			}
			stop()
			select {
			case err := <-ran:
				if err != nil {
					t.Errorf("round %d: Run = %v", round, err)
				}
			case <-time.After(15 * time.Second):
				buf := make([]byte, 1<<20)
				t.Fatalf("round %d: Run did not return:\n%s", round, buf[:runtime.Stack(buf, true)])
			}
			done.Store(true)
			publishing.Wait()
		}()
	}
	mu.Lock()
	var missing []int64
	for n := range acked {
		if handled[n] == 0 {
			missing = append(missing, n)
		}
	}
	t.Logf("%d published, %d acknowledged, %d handled", next.Load(), len(acked), len(handled))
	mu.Unlock()
	if len(missing) > 0 {
		t.Errorf("%d acknowledged messages never handled, e.g. %v", len(missing), missing[:min(len(missing), 10)])
	}
	for end := time.Now().Add(10 * time.Second); countGoroutines() > baseGoroutines && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := countGoroutines(); n > baseGoroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after %d rounds, %d before:\n%s", n, rounds, baseGoroutines, buf[:runtime.Stack(buf, true)])
	}
	if n := countFiles(t); n > baseFiles {
		t.Errorf("%d open files after %d rounds, %d before", n, rounds, baseFiles)
	}
}

// countGoroutines counts the goroutines, not counting os/signal's loop,
// started once per process by the first server.
func countGoroutines() int {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	return strings.Count(stacks, "\n\ngoroutine ") + 1 - strings.Count(stacks, "os/signal.loop")
}

// countFiles counts the process's open files (Linux only).
func countFiles(tb testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skip("no /proc/self/fd")
	}
	return len(entries)
}
