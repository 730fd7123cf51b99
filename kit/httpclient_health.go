package kit

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/bufbuild/httplb/conn"
	"github.com/bufbuild/httplb/health"
)

// dialHealth is the balancer's health checker: an address is healthy until
// a connection to it fails to open, or it fails calls in a row (see
// outlierTransport); then it is left out of the balancing, in the first
// case while a probe dials it, every second, until a dial succeeds, in the
// second for its ejection's time (see eject).
type dialHealth struct {
	timeout time.Duration
	outlier outlierConfig

	mu     sync.Mutex
	tasks  map[string]map[*dialCheck]struct{} // by address
	addrs  map[string]*outlierAddr            // by address, while ejection is on
	closed bool                               // no more ejections
	wg     sync.WaitGroup                     // the probes running, and the ejections' ends
}

// newDialHealth returns the health checker whose probes dial with timeout,
// and which ejects addresses as outlier says.
func newDialHealth(timeout time.Duration, outlier outlierConfig) *dialHealth {
	return &dialHealth{timeout: timeout, outlier: outlier, tasks: map[string]map[*dialCheck]struct{}{}, addrs: map[string]*outlierAddr{}}
}

// dialCheck is the health check of one connection of the balancer.
type dialCheck struct {
	ctx     context.Context
	cancel  context.CancelFunc
	conn    conn.Conn
	tracker health.Tracker
	probing bool // guarded by dialHealth.mu
	ejected bool // guarded by dialHealth.mu

	// marking orders mark's marks: each call's, and its looks at
	// probing and ejected, are made under it, so that the last agrees
	// with them.
	marking sync.Mutex
}

// New starts the check of c: healthy, until a dial to its address fails.
func (h *dialHealth) New(ctx context.Context, c conn.Conn, tracker health.Tracker) io.Closer {
	ctx, cancel := context.WithCancel(ctx)
	check := &dialCheck{ctx: ctx, cancel: cancel, conn: c, tracker: tracker}
	addr := c.Address().HostPort
	h.mu.Lock()
	if h.tasks[addr] == nil {
		h.tasks[addr] = map[*dialCheck]struct{}{}
	}
	h.tasks[addr][check] = struct{}{}
	h.mu.Unlock()
	// In a goroutine: the balancer calls New holding its lock, which
	// UpdateHealthState takes. A dial may fail meanwhile and mark the
	// connection unhealthy first: see mark.
	h.wg.Go(func() { h.mark(check) })
	return closerFunc(func() error {
		cancel()
		h.mu.Lock()
		delete(h.tasks[addr], check)
		if len(h.tasks[addr]) == 0 {
			delete(h.tasks, addr)
		}
		h.mu.Unlock()
		return nil
	})
}

// dial wraps the client's dial function: a failed dial marks its address
// unhealthy and starts probing it.
func (h *dialHealth) dial(next func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.failed(network, addr)
		}
		return c, err
	}
}

// failed marks every connection to addr unhealthy and probes addr until it
// takes a connection again.
func (h *dialHealth) failed(network, addr string) {
	var marked []*dialCheck
	h.mu.Lock()
	for check := range h.tasks[addr] {
		if !check.probing {
			check.probing = true
			marked = append(marked, check)
		}
	}
	h.mu.Unlock()
	// Outside h.mu: the balancer calls New holding its own lock, which
	// UpdateHealthState takes.
	for _, check := range marked {
		check.tracker.UpdateHealthState(check.conn, health.StateUnhealthy)
		h.wg.Go(func() { h.probe(check, network, addr) })
	}
}

// probe dials addr every second until a dial succeeds, then marks check's
// connection healthy again.
func (h *dialHealth) probe(check *dialCheck, network, addr string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	dialer := net.Dialer{Timeout: h.timeout}
	for {
		select {
		case <-check.ctx.Done():
			return
		case <-tick.C:
		}
		c, err := dialer.DialContext(check.ctx, network, addr)
		if err != nil {
			continue
		}
		_ = c.Close()
		h.mu.Lock()
		check.probing = false
		h.mu.Unlock()
		h.mark(check)
		return
	}
}

// mark marks check's connection healthy, or unhealthy while a probe dials
// its address or it is ejected, and again while that changed meanwhile
// (the mark is made outside h.mu, so a failed dial can come between,
// which failed no longer marks while its new probe runs). Its marks are
// made under check.marking: a late "unhealthy" of New's mark, made after
// the probe that the failure started had marked the connection healthy
// again, would leave it out with no probe running. The balancer's lock,
// which UpdateHealthState takes, is never held while check.marking is
// awaited.
func (h *dialHealth) mark(check *dialCheck) {
	check.marking.Lock()
	defer check.marking.Unlock()
	out := h.isOut(check)
	for {
		state := health.StateHealthy
		if out {
			state = health.StateUnhealthy
		}
		check.tracker.UpdateHealthState(check.conn, state)
		now := h.isOut(check)
		if now == out {
			return
		}
		out = now
	}
}

// isOut reports whether check's connection is out of the balancing: its
// address is probed, or ejected.
func (h *dialHealth) isOut(check *dialCheck) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return check.probing || check.ejected
}

// close waits for the probes, which the balancer's closing cancelled, and
// the ejections' ends (stopEjections stops those that had not begun).
func (h *dialHealth) close() { h.wg.Wait() }

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
