package kit

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/connctx"
)

// freshConns holds the main listener's open connections, so that the
// shutdown can close those that never sent a request: net/http's Shutdown
// takes a connection that has sent nothing for idle only 5 seconds after it
// connected (and its ReadHeaderTimeout closes it then too), so one such
// connection (a client pool's spare, a load balancer's pre-opened one)
// held every shutdown for up to 5s, and past a shorter ShutdownTimeout made
// Run report in-flight calls that were none and cut the calls of other
// connections. On the main listener a connection is added once, when it
// is accepted (ConnContext), and removed once, when it closes (ConnState):
// nothing per request. On the admin listener, whose requests are few, it
// is removed at its first request (see [freshConns.adminConnState]).
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]freshConn
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
	f.mu.Unlock()
	return ctx
}

func (f *freshConns) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}
}

// adminConnState keeps a connection of the admin listener, whose
// connections have no connctx.State, until its first request.
func (f *freshConns) adminConnState(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st != http.StateNew {
		delete(f.conns, c)
		return
	}
	if f.conns == nil {
		f.conns = make(map[net.Conn]freshConn)
	}
	f.conns[c] = freshConn{since: time.Now()}
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
				delete(f.conns, c)
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
