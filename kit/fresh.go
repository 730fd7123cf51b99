package kit

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/connctx"
)

// freshConns holds the main listener's connections that have not sent a
// request yet, so that the shutdown can close those that never do:
// net/http's Shutdown takes a connection that has sent nothing for idle
// only 5 seconds after it connected (and its ReadHeaderTimeout closes it
// then too), so one such connection (a client pool's spare, a load
// balancer's pre-opened one) held every shutdown for up to 5s, and past a
// shorter ShutdownTimeout made Run report in-flight calls that were none
// and cut the calls of other connections. A connection is added when it
// is accepted (ConnContext) and removed when it becomes active
// (ConnState): once net/http has read an HTTP/1.x request's header (which
// it serves, or drops once its Shutdown has begun), or an HTTP/2
// connection's preface, which HTTP/2's own shutdown ends with a GOAWAY (a
// client that starts a call just then retries it elsewhere; a connection
// closed under it fails the call). One
// that becomes active only once the shutdown has begun stays, for
// closeSilent to close if it has not started a call (its Version is 0):
// an HTTP/2 connection that net/http's shutdown may have missed. On the
// admin listener, which serves HTTP/1.x only, a connection is added at
// StateNew (see [freshConns.adminConnState]).
type freshConns struct {
	mu       sync.Mutex
	conns    map[net.Conn]freshConn
	stopping atomic.Bool // set by closeSilentUntilStopped, before net/http's Shutdown
	// n is len(conns), stored under mu, so that the StateActive of every
	// request on a connection already removed (nearly all of them) takes
	// no lock: a connection's own StateActive follows its addition.
	n atomic.Int32
}

type freshConn struct {
	state *connctx.State // Version is 0 until its first request arrives; nil on the admin listener
	since time.Time
}

// freshGrace is how long a connection may stay silent after it connected
// before the shutdown closes it: a client that has just connected is
// likely sending its request.
const freshGrace = time.Second

func (f *freshConns) connContext(ctx context.Context, c net.Conn) context.Context {
	ctx = interceptors.ConnContext(ctx, c)
	f.mu.Lock()
	if f.conns == nil {
		f.conns = make(map[net.Conn]freshConn)
	}
	f.conns[c] = freshConn{state: connctx.FromContext(ctx), since: time.Now()}
	f.n.Store(int32(len(f.conns)))
	f.mu.Unlock()
	return ctx
}

func (f *freshConns) connState(c net.Conn, st http.ConnState) {
	switch {
	case st != http.StateActive && st != http.StateClosed && st != http.StateHijacked:
		return
	case st == http.StateActive && f.stopping.Load():
		return // it stays (see freshConns)
	case f.n.Load() == 0:
		return // c is not in conns: at a request's StateActive, nearly always
	}
	f.mu.Lock()
	f.remove(c)
	f.mu.Unlock()
}

// adminConnState keeps a connection of the admin listener, whose
// connections have no connctx.State, until its first request.
func (f *freshConns) adminConnState(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st != http.StateNew {
		f.remove(c)
		return
	}
	if f.conns == nil {
		f.conns = make(map[net.Conn]freshConn)
	}
	f.conns[c] = freshConn{since: time.Now()}
	f.n.Store(int32(len(f.conns)))
}

// remove removes c from conns; the caller holds f.mu.
func (f *freshConns) remove(c net.Conn) {
	delete(f.conns, c)
	f.n.Store(int32(len(f.conns)))
}

// closeSilentUntilStopped starts closing, until stop is called, every
// connection that has sent no request freshGrace after it connected. Call
// it just before net/http's Shutdown: a connection that becomes active
// from then on stays in f (see [freshConns]).
func (f *freshConns) closeSilentUntilStopped() (stop func()) {
	f.stopping.Store(true)
	done := make(chan struct{})
	go f.closeSilent(done)
	return func() { close(done) }
}

// closeSilent closes, until done is closed, every connection that has
// sent no request freshGrace after it connected.
func (f *freshConns) closeSilent(done <-chan struct{}) {
	t := time.NewTicker(freshGrace / 10)
	defer t.Stop()
	for {
		f.mu.Lock()
		for c, fc := range f.conns {
			if (fc.state == nil || fc.state.Version.Load() == 0) && time.Since(fc.since) >= freshGrace {
				_ = c.Close()
				f.remove(c)
			}
		}
		f.mu.Unlock()
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}
