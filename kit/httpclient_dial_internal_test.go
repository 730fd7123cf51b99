package kit

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bufbuild/httplb/conn"
	"github.com/bufbuild/httplb/health"
	"github.com/bufbuild/httplb/resolver"
)

// h2cServer runs an h2c server on loopback that answers "ok", and returns
// its address.
func h2cServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestDeadAddressLeftOut resolves a name to two servers and an address
// where none listens: every call succeeds, and the client dials the dead
// address once, not at each of its turns (its probes dial on their own).
func TestDeadAddressLeftOut(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()

	var mu sync.Mutex
	dials := map[string]int{}
	var dialer net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials[addr]++
		mu.Unlock()
		return dialer.DialContext(ctx, network, addr)
	}
	c := newBalancedClient(HTTPClientConfig{}.withDefaults(), nil, NewStaticNames(h2cServer(t), dead, h2cServer(t)), dial, nil, clientMetrics{})
	defer func() { _ = c.close(context.Background()) }()

	const calls = 60
	for i := range calls {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://svc.test/", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.http.Do(req)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		body, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err != nil || string(body) != "ok" || res.ProtoMajor != 2 {
			t.Fatalf("call %d = %s %q over HTTP/%d, %v; want ok over HTTP/2", i, res.Status, body, res.ProtoMajor, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if dials[dead] > 2 {
		t.Errorf("the dead address was dialed %d times in %d calls, want once (then left out); dials: %v", dials[dead], calls, dials)
	}
}

// addrConn is a connection of the balancer that has only an address.
type addrConn struct {
	conn.Conn
	addr string
}

func (c addrConn) Address() resolver.Address { return resolver.Address{HostPort: c.addr} }

// hookTracker records the health states given to it, calls onHealthy
// before it records a healthy state and onUnhealthy before an unhealthy
// one, and recorded after it records any.
type hookTracker struct {
	mu          sync.Mutex
	states      []health.State
	onHealthy   func()
	onUnhealthy func()
	recorded    func(health.State)
}

func (r *hookTracker) UpdateHealthState(_ conn.Conn, state health.State) {
	if state == health.StateHealthy && r.onHealthy != nil {
		r.onHealthy()
	}
	if state == health.StateUnhealthy && r.onUnhealthy != nil {
		r.onUnhealthy()
	}
	r.mu.Lock()
	r.states = append(r.states, state)
	r.mu.Unlock()
	if r.recorded != nil {
		r.recorded(state)
	}
}

// TestProbeLateHealthy fails a dial to an address between its probe's
// success and the probe's "healthy": the address must end unhealthy, with
// its new probe running, not healthy, which a failed dial no longer marks
// while it probes, so every turn of it would dial it again (the late mark
// of 10dc68e, in the probe).
func TestProbeLateHealthy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	h := newDialHealth(time.Second, outlierConfig{})
	fired := make(chan struct{})
	var healthy int
	tracker := &hookTracker{}
	tracker.onHealthy = func() {
		healthy++
		if healthy == 2 { // the probe's: the address fails again meanwhile
			_ = ln.Close() // so that the new probe never connects
			h.failed("tcp", addr)
			close(fired)
		}
	}
	closer := h.New(t.Context(), addrConn{addr: addr}, tracker)
	h.wg.Wait() // New's own "healthy"
	h.failed("tcp", addr)
	<-fired
	_ = closer.Close()
	h.close()
	tracker.mu.Lock()
	defer tracker.mu.Unlock()
	if last := tracker.states[len(tracker.states)-1]; last != health.StateUnhealthy {
		t.Errorf("states %v: the address ends %v, want unhealthy (its dial failed after its probe connected)", tracker.states, last)
	}
}

// TestNewLateUnhealthy fails a dial to an address between New's "healthy"
// and its look at the probing it starts, and holds New's "unhealthy" again
// back until the probe has connected and marked the address healthy (or
// for 3s, as long as the probe cannot mark it before): the address must
// end healthy, as its probe found it, not unhealthy with no probe left to
// mark it again, out of the rotation for good.
func TestNewLateUnhealthy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // the probe connects
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	addr := ln.Addr().String()
	h := newDialHealth(time.Second, outlierConfig{})
	probeMarked := make(chan struct{})
	var healthy, unhealthy atomic.Int32
	tracker := &hookTracker{}
	tracker.onHealthy = func() {
		if healthy.Add(1) == 1 { // New's: the address fails meanwhile
			h.failed("tcp", addr)
		}
	}
	tracker.onUnhealthy = func() {
		if unhealthy.Add(1) == 2 { // New's again, late
			select {
			case <-probeMarked:
			case <-time.After(3 * time.Second):
			}
		}
	}
	tracker.recorded = func(state health.State) {
		if state == health.StateHealthy && healthy.Load() == 2 {
			close(probeMarked)
		}
	}
	closer := h.New(t.Context(), addrConn{addr: addr}, tracker)
	h.wg.Wait() // New's marks and the probe
	_ = closer.Close()
	tracker.mu.Lock()
	defer tracker.mu.Unlock()
	if last := tracker.states[len(tracker.states)-1]; last != health.StateHealthy {
		t.Errorf("states %v: the address ends %v with no probe running, want healthy (its probe connected)", tracker.states, last)
	}
}
