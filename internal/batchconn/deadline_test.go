package batchconn

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// deadlineRecorder is a socket that records the read deadlines it is given.
type deadlineRecorder struct {
	net.Conn
	mu  sync.Mutex
	set []time.Time
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	d.set = append(d.set, t)
	d.mu.Unlock()
	return d.Conn.SetReadDeadline(t)
}

// take returns the deadlines given since the last take.
func (d *deadlineRecorder) take() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	set := d.set
	d.set = nil
	return set
}

// readInProgress reports whether a read of c's socket is under way.
func (c *conn) readInProgress() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.reading > 0
}

// TestReadDeadlineReachesSocketWhenRead holds the lazy read deadline to a
// socket's behaviour, on a plain connection (HTTP/1.x) and a batched one:
// deadlines set and changed with no read in between never reach the socket,
// the one in force when a read starts does, a deadline already past fails
// the read, and one set while a read is blocked wakes it.
func TestReadDeadlineReachesSocketWhenRead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{name: "plain", cfg: Config{}},
		{name: "batched", cfg: Config{Mode: ModeAll}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			server, client := pair(t, tc.cfg)
			rec := &deadlineRecorder{Conn: server.Conn}
			server.Conn = rec
			if _, err := client.Write([]byte("GET ")); err != nil {
				t.Fatal(err)
			}
			readN(t, server, 4) // a plain connection stops sniffing here
			rec.take()

			// What net/http does between two reads of a request's
			// connection: the header's timeout, cleared, the body's,
			// cleared.
			now := time.Now()
			server.SetReadDeadline(now.Add(5 * time.Second))
			server.SetReadDeadline(time.Time{})
			server.SetReadDeadline(now.Add(time.Hour))
			server.SetReadDeadline(time.Time{})
			if got := rec.take(); len(got) != 0 {
				t.Fatalf("the socket got %d read deadlines with no read, want none: %v", len(got), got)
			}

			// The idle timeout, then a read: the socket has it.
			idle := now.Add(2 * time.Minute)
			server.SetReadDeadline(idle)
			if _, err := client.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1)
			if _, err := server.Read(buf); err != nil {
				t.Fatal(err)
			}
			if got := rec.take(); len(got) != 1 || got[0] != idle {
				t.Fatalf("the read gave the socket the deadlines %v, want [%v]", got, idle)
			}
			// The same deadline again, and another read: nothing to give.
			server.SetReadDeadline(idle)
			if _, err := client.Write([]byte("y")); err != nil {
				t.Fatal(err)
			}
			if _, err := server.Read(buf); err != nil {
				t.Fatal(err)
			}
			if got := rec.take(); len(got) != 0 {
				t.Fatalf("the socket got %v again", got)
			}

			// A deadline already past fails the next read.
			server.SetReadDeadline(time.Now().Add(-time.Second))
			if _, err := server.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read past the deadline = %v, want os.ErrDeadlineExceeded", err)
			}

			// One set while a read is blocked wakes it, as net/http's
			// abortPendingRead needs.
			server.SetReadDeadline(time.Time{})
			errc := make(chan error, 1)
			go func() {
				_, err := server.Read(buf)
				errc <- err
			}()
			eventually(t, "a read of the socket is blocked", server.readInProgress)
			server.SetReadDeadline(time.Now().Add(-time.Second))
			if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("blocked Read = %v, want os.ErrDeadlineExceeded", err)
			}

			// Cleared again, reads go on.
			server.SetReadDeadline(time.Time{})
			if _, err := client.Write([]byte("z")); err != nil {
				t.Fatal(err)
			}
			if got := readN(t, server, 1); string(got) != "z" {
				t.Fatalf("read %q after clearing the deadline, want z", got)
			}
		})
	}
}
