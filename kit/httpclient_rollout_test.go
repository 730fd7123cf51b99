package kit_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// failures counts the failed calls of one kind, by code.
type failures struct {
	mu     sync.Mutex
	calls  int
	byCode map[connect.Code]int
	first  map[connect.Code]string
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if err == nil {
		return
	}
	if f.byCode == nil {
		f.byCode, f.first = map[connect.Code]int{}, map[connect.Code]string{}
	}
	code := connect.CodeOf(err)
	if f.byCode[code] == 0 {
		f.first[code] = err.Error()
	}
	f.byCode[code]++
}

func (f *failures) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	var codes []string
	for code, c := range f.byCode {
		n += c
		codes = append(codes, fmt.Sprintf("%v: %d (first: %s)", code, c, f.first[code]))
	}
	sort.Strings(codes)
	return fmt.Sprintf("%d of %d calls failed %v", n, f.calls, codes)
}

// others returns the number of calls that failed with another code than
// code.
func (f *failures) others(code connect.Code) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for c, count := range f.byCode {
		if c != code {
			n += count
		}
	}
	return n
}

func (f *failures) failed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.byCode {
		n += c
	}
	return n
}

// TestHTTPClientRollout calls a name with three kit servers behind it, as
// a service deploys the client (srv.HTTPClient and srv.ClientOptions with
// KIT_CLIENT_RETRY and KIT_CLIENT_BREAKER on), from a caller per protocol
// and kind of call, while each server is replaced in turn by a graceful
// shutdown (still resolved while it drains and after it closed, then
// replaced in the name) and one is then killed (listener and connections
// closed at once). Idempotent calls must not fail at all; calls of a
// method that is not idempotent only when they were in flight on the
// killed one: at most one per caller, since each has one call at a time.
// Server streams likewise. Every new server must get calls, and the
// breaker must stay closed.
func TestHTTPClientRollout(t *testing.T) {
	t.Parallel()
	var tl tally
	newBackend := func() *kittest.Server {
		var name string
		b := kittest.NewServer(t, kit.Config{DrainDelay: 100 * time.Millisecond}, func(srv *kit.Server) {
			path, h := pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...)
			srv.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tl.tag(name, h).ServeHTTP(w, r)
			}))
		})
		name = b.Addr().String()
		return b
	}
	backends := []*kittest.Server{newBackend(), newBackend(), newBackend()}
	names := kit.NewStaticNames(addrsOf(backends)...)
	caller := kittest.NewServer(t, kit.Config{
		ClientRetry:   kit.ClientRetryConfig{Enabled: true},
		ClientBreaker: kit.ClientBreakerConfig{Enabled: true},
	}, nil, kit.WithResolver(names))

	var idempotent, other, streams failures
	stop := make(chan struct{})
	var callers sync.WaitGroup
	ctx := t.Context()
	for _, p := range balancedProtocols {
		opts := append(caller.ClientOptions(), p.opts...)
		ping := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://ping.test", opts...)
		// The same method without its idempotency level: a call that
		// changes something.
		change := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](caller.HTTPClient(),
			"http://ping.test"+pingv1connect.PingServicePingProcedure, opts...)
		for _, c := range []struct {
			f    *failures
			call func(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error)
		}{{&idempotent, ping.Ping}, {&other, change.CallUnary}, {&streams, countUp(ping)}} {
			callers.Go(func() {
				for i := int64(0); ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					_, err := c.call(ctx, connect.NewRequest(&pingv1.PingRequest{Number: i}))
					c.f.add(err)
				}
			})
		}
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		callers.Wait()
	}()

	// servedAll waits until each of addrs served calls since the last
	// take.
	servedAll := func(step string, addrs ...string) {
		t.Helper()
		tl.take()
		got := map[string]int{}
		if !eventually(func() bool {
			calls, _ := tl.take()
			for a, n := range calls {
				got[a] += n
			}
			for _, a := range addrs {
				if got[a] < 30 {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("%s: calls served %v, want calls to each of %v", step, got, addrs)
		}
		t.Logf("%s: calls served %v", step, got)
	}
	servedAll("start", addrsOf(backends)...)

	// Replace each server: the old one shuts down while the name still
	// gives its address, then the name gives the new one's in its place.
	for i := range backends {
		old := backends[i]
		backends[i] = newBackend()
		if err := old.Stop(); err != nil {
			t.Errorf("shutdown of %s: %v", old.Addr(), err)
		}
		servedAll(fmt.Sprintf("server %d stopped", i), slices.Delete(addrsOf(backends), i, i+1)...)
		names.Set(addrsOf(backends)...)
		servedAll(fmt.Sprintf("server %d replaced", i), addrsOf(backends)...)
	}

	// Kill one, reached through a forwarder whose connections all close
	// at once.
	front := newKillable(t, backends[0].Addr().String())
	names.Set(front.addr(), backends[1].Addr().String(), backends[2].Addr().String())
	servedAll("forwarder in the name", addrsOf(backends)...)
	before := other.failed() + streams.failed()
	front.kill()
	servedAll("forwarder killed", addrsOf(backends)[1:]...)
	names.Set(addrsOf(backends)[1:]...)
	servedAll("killed one out of the name", addrsOf(backends)[1:]...)
	close(stop)
	callers.Wait()

	t.Logf("idempotent: %v", &idempotent)
	t.Logf("not idempotent: %v", &other)
	t.Logf("streams: %v", &streams)
	if idempotent.failed() != 0 {
		t.Errorf("idempotent: %v, want none", &idempotent)
	}
	if before != 0 {
		t.Errorf("not idempotent and streams: %d calls failed before the kill, want none", before)
	}
	if n := other.failed(); n > len(balancedProtocols) {
		t.Errorf("not idempotent: %v, want at most %d (one per caller, at the kill)", &other, len(balancedProtocols))
	}
	if n := streams.failed(); n > len(balancedProtocols) {
		t.Errorf("streams: %v, want at most %d (one per caller, at the kill)", &streams, len(balancedProtocols))
	}
	for _, f := range []*failures{&other, &streams} {
		if f.others(connect.CodeUnavailable) != 0 {
			t.Errorf("%v, want every failure unavailable", f)
		}
	}
}

// countUp returns a call of ping's server stream CountUp that counts up to
// three and fails unless it got the three numbers.
func countUp(ping pingv1connect.PingServiceClient) func(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return func(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
		stream, err := ping.CountUp(ctx, connect.NewRequest(&pingv1.CountUpRequest{Number: 3}))
		if err != nil {
			return nil, err
		}
		defer stream.Close()
		got := int64(0)
		for stream.Receive() {
			got = stream.Msg().GetNumber()
		}
		if err := stream.Err(); err != nil {
			return nil, err
		}
		if got != 3 {
			return nil, connect.NewError(connect.CodeDataLoss, fmt.Errorf("counted up to %d of 3", got))
		}
		return connect.NewResponse(&pingv1.PingResponse{}), nil
	}
}
