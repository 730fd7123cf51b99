package kit

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/bufbuild/httplb/resolver"

	"github.com/connectkit/connectkit/internal/connctx"
)

// SetSendStall sets how long a stream's Send may wait for its client (see
// sendGuard), for services mounted after the call.
func SetSendStall(s *Server, d time.Duration) { s.sendStall = d }

// SetCutGrace sets how long the shutdown waits for the handlers of the
// calls it cut at ShutdownTimeout (closeGrace, 1s, otherwise).
func SetCutGrace(s *Server, d time.Duration) { s.cutGrace = d }

// StackMark returns where the stack of the connection r came over was
// after its last growth (see growConnStack), or 0.
func StackMark(r *http.Request) uintptr {
	if c := connctx.FromContext(r.Context()); c != nil {
		return c.StackMark
	}
	return 0
}

// StackGrowths returns how many requests of the connection r came over
// had its goroutine's stack grown (see growConnStack), or 0.
func StackGrowths(r *http.Request) uint32 {
	if c := connctx.FromContext(r.Context()); c != nil {
		return c.StackGrowths
	}
	return 0
}

// WithResolver makes HTTPClient resolve names with r instead of DNS.
func WithResolver(r resolver.Resolver) Option {
	return optionFunc(func(o *options) { o.resolver = r })
}

// StaticNames is a resolver for HTTPClient ([WithResolver]) that resolves
// every name to the addresses set last, and tells the client at once when
// they change (as DNS would at the client's next resolution). An IP address
// resolves to itself.
type StaticNames struct {
	mu      sync.Mutex
	addrs   []string
	changed chan struct{} // closed, and replaced, by set
}

// NewStaticNames returns names that resolve to addrs.
func NewStaticNames(addrs ...string) *StaticNames {
	return &StaticNames{addrs: addrs, changed: make(chan struct{})}
}

// Set changes the addresses every name resolves to.
func (n *StaticNames) Set(addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs = addrs
	close(n.changed)
	n.changed = make(chan struct{})
}

// New reports the addresses to rcv now and at each Set.
func (n *StaticNames) New(ctx context.Context, _, hostPort string, rcv resolver.Receiver, refresh <-chan struct{}) io.Closer {
	if host, _, err := net.SplitHostPort(hostPort); err == nil && net.ParseIP(host) != nil {
		n = NewStaticNames(hostPort)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n.mu.Lock()
			addrs, changed := n.addrs, n.changed
			n.mu.Unlock()
			list := make([]resolver.Address, len(addrs))
			for i, a := range addrs {
				list[i].HostPort = a
			}
			rcv.OnResolve(list)
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-refresh:
			}
		}
	}()
	return closerFunc(func() error { cancel(); <-done; return nil })
}

// EndEjections ends at once the ejections of the addresses that s's
// HTTPClient left out for failing calls, as their time would.
func EndEjections(s *Server) {
	s.httpClientMu.Lock()
	c := s.httpClient
	s.httpClientMu.Unlock()
	if c == nil {
		return
	}
	h := c.health
	h.mu.Lock()
	var ejected []*outlierAddr
	for _, a := range h.addrs {
		if a.ejected && a.timer.Stop() {
			ejected = append(ejected, a)
		}
	}
	h.mu.Unlock()
	for _, a := range ejected {
		h.restore(a)
		h.wg.Done()
	}
}

// SetAuthnInfoKey sets the key under which kit takes authn's context key
// to be (see authnInfoKey) until the test ends. The test must not be
// parallel.
func SetAuthnInfoKey(tb testing.TB, key any) {
	old := authnInfoKey
	authnInfoKey = key
	tb.Cleanup(func() { authnInfoKey = old })
}

// SetChainBuildWarning sets how long New builds its chain before it logs
// what may hold it for good (chainBuildWarning), for the process.
func SetChainBuildWarning(d time.Duration) { chainBuildWarning = d }

// InFlightBytes returns the request bytes that MaxInFlightBytes counts as
// held now, the most held at once, and the calls waiting for theirs.
func InFlightBytes(s *Server) (inUse, peak, waiting int64) {
	return s.inBytes.inUse.Load(), s.inBytes.peak.Load(), s.inBytes.waiting.Load()
}

// SetInFlightBytesWait sets the longest a call waits for its bytes under
// MaxInFlightBytes (requestBytesWait, 5s, otherwise).
func SetInFlightBytesWait(s *Server, d time.Duration) { s.inBytes.wait.Store(int64(d)) }
