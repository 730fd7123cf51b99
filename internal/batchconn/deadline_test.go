package batchconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// deadlineRecorder is a socket that records the deadlines it is given:
// set[0] the read deadlines, set[1] the write deadlines.
type deadlineRecorder struct {
	net.Conn
	mu  sync.Mutex
	set [2][]time.Time
}

func (d *deadlineRecorder) record(i int, t time.Time) {
	d.mu.Lock()
	d.set[i] = append(d.set[i], t)
	d.mu.Unlock()
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	d.record(0, t)
	return d.Conn.SetReadDeadline(t)
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.record(1, t)
	return d.Conn.SetWriteDeadline(t)
}

// ReadFrom is the socket's, recording nothing.
func (d *deadlineRecorder) ReadFrom(r io.Reader) (int64, error) {
	return d.Conn.(io.ReaderFrom).ReadFrom(r)
}

// take returns the read deadlines given since the last take.
func (d *deadlineRecorder) take() []time.Time { return d.takeSet(0) }

// takeWrite returns the write deadlines given since the last takeWrite.
func (d *deadlineRecorder) takeWrite() []time.Time { return d.takeSet(1) }

func (d *deadlineRecorder) takeSet(i int) []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	set := d.set[i]
	d.set[i] = nil
	return set
}

// writeInProgress reports whether a write to c's socket is under way.
func (c *conn) writeInProgress() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.wdLazy.busy > 0
}

// readInProgress reports whether a read of c's socket is under way.
func (c *conn) readInProgress() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.rdLazy.busy > 0
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

// TestPlainWriteDeadlineReachesSocketWhenWritten holds a plain connection's
// lazy write deadline to a socket's behaviour: deadlines set and cleared
// with no write in between never reach the socket, the one in force when a
// write starts (Write or ReadFrom) does, a deadline already past fails the
// write, and one set while a write is blocked (a peer that stopped reading)
// wakes it.
func TestPlainWriteDeadlineReachesSocketWhenWritten(t *testing.T) {
	t.Parallel()
	server, client := pair(t, Config{})
	rec := &deadlineRecorder{Conn: server.Conn}
	server.Conn = rec
	if _, err := client.Write([]byte("GET ")); err != nil {
		t.Fatal(err)
	}
	readN(t, server, 4) // plain from here
	rec.takeWrite()

	// A response's deadline, cleared after it, then the next one's.
	now := time.Now()
	server.SetWriteDeadline(now.Add(time.Hour))
	server.SetWriteDeadline(time.Time{})
	next := now.Add(2 * time.Hour)
	server.SetWriteDeadline(next)
	if got := rec.takeWrite(); len(got) != 0 {
		t.Fatalf("the socket got %d write deadlines with no write, want none: %v", len(got), got)
	}
	if _, err := server.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if got := rec.takeWrite(); len(got) != 1 || got[0] != next {
		t.Fatalf("the write gave the socket the deadlines %v, want [%v]", got, next)
	}
	readN(t, client, 2)

	// ReadFrom (sendfile) writes under it too.
	server.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := server.ReadFrom(bytes.NewReader([]byte("body"))); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}

	// A write blocked on a peer that does not read is woken by a deadline
	// set meanwhile.
	server.SetWriteDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := server.Write(chunk); err != nil {
				errc <- err
				return
			}
		}
	}()
	eventually(t, "a write to the socket is blocked", func() bool {
		if !server.writeInProgress() {
			return false
		}
		time.Sleep(10 * time.Millisecond) // still in progress: blocked, most likely
		return server.writeInProgress()
	})
	server.SetWriteDeadline(time.Now().Add(-time.Second))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked Write = %v, want os.ErrDeadlineExceeded", err)
	}
}
