package batchconn

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/testcert"
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

// A read cut by a read deadline from SetMessageReadDeadline fails with
// Config.ReadDeadlineMessage, without the addresses of the socket's error,
// as a deadline's error to net/http and crypto/tls: a temporary timeout, os.ErrDeadlineExceeded to
// errors.Is; and the connection reads again once the deadline is cleared
// (beneath crypto/tls too, which keeps an error that is not temporary).
// A deadline from SetReadDeadline, set next, keeps the socket's error.
func TestReadDeadlineMessage(t *testing.T) {
	t.Parallel()
	const msg = "request body not received in time"
	for _, tc := range []struct {
		name string
		// conns returns the connection read, as its server sees it (a
		// batchconn conn, or crypto/tls over one), and its client.
		conns func(t *testing.T) (server, client net.Conn)
		// buffered: bytes are waiting in the read buffer when the
		// deadline passes.
		buffered bool
	}{
		{name: "plain", conns: func(t *testing.T) (net.Conn, net.Conn) {
			server, client := pair(t, Config{ReadDeadlineMessage: msg})
			sendAndRead(t, server, client, "PO") // not the HTTP/2 preface
			return server, client
		}},
		{name: "batched", conns: func(t *testing.T) (net.Conn, net.Conn) {
			return batchedPair(t, Config{ReadDeadlineMessage: msg})
		}},
		{name: "batched with bytes buffered", buffered: true, conns: func(t *testing.T) (net.Conn, net.Conn) {
			return batchedPair(t, Config{ReadDeadlineMessage: msg})
		}},
		{name: "tls", conns: func(t *testing.T) (net.Conn, net.Conn) {
			return tlsPair(t, Config{Mode: ModeALPN, ReadDeadlineMessage: msg})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			server, client := tc.conns(t)
			if tc.buffered {
				sendAndRead(t, server, client, "0123456789")
			}
			// The deadline passes while the read waits, or before it.
			deadline := time.Now().Add(50 * time.Millisecond)
			if tc.buffered {
				deadline = time.Now().Add(-time.Second)
			}
			if ok, err := SetMessageReadDeadline(server, deadline); !ok || err != nil {
				t.Fatalf("SetMessageReadDeadline = %v, %v; want true, nil", ok, err)
			}
			_, err := server.Read(make([]byte, 1))
			if err == nil || err.Error() != msg || strings.Contains(err.Error(), "127.0.0.1") {
				t.Fatalf("Read past the deadline = %v, want %q", err, msg)
			}
			ne, ok := err.(net.Error) // as net/http and crypto/tls assert it
			//lint:ignore SA1019 the error must be a net.Conn deadline's (os.ErrDeadlineExceeded answers true) for code that still asks
			if !ok || !ne.Timeout() || !ne.Temporary() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read past the deadline = %#v, want a temporary timeout matching os.ErrDeadlineExceeded", err)
			}
			server.SetReadDeadline(time.Time{})
			if _, err := client.Write([]byte("more")); err != nil {
				t.Fatal(err)
			}
			if tc.buffered {
				readN(t, server, 8) // "23456789"
			}
			if got := readN(t, server, 4); string(got) != "more" {
				t.Fatalf("read %q after clearing the deadline, want %q", got, "more")
			}
			// A deadline set as any other is (net/http's idle timeout, a
			// TLS handshake's, a handler's own) keeps the socket's error.
			server.SetReadDeadline(time.Now().Add(-time.Second))
			var oe *net.OpError
			if _, err := server.Read(make([]byte, 1)); !errors.As(err, &oe) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read past a deadline from SetReadDeadline = %v, want the socket's *net.OpError", err)
			}
		})
	}
	// Without it, the socket's error.
	server, _ := pair(t, Config{})
	if ok, _ := SetMessageReadDeadline(server, time.Now().Add(-time.Second)); ok {
		t.Fatal("SetMessageReadDeadline on a listener without a message = true")
	}
	server.SetReadDeadline(time.Now().Add(-time.Second))
	var oe *net.OpError
	if _, err := server.Read(make([]byte, 1)); !errors.As(err, &oe) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline without a message = %v, want the socket's *net.OpError", err)
	}
}

// sendAndRead has client send s and server read its first two bytes.
func sendAndRead(t *testing.T, server, client net.Conn, s string) {
	t.Helper()
	if _, err := client.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	readN(t, server, 2)
}

// tlsPair returns the two ends of an HTTP/1.1 TLS connection accepted
// through a batchconn listener built from cfg.
func tlsPair(t *testing.T, cfg Config) (net.Conn, net.Conn) {
	t.Helper()
	ca, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("server")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(listen(t, cfg), TLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}))
	type dialed struct {
		c   *tls.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}})
		done <- dialed{c, err}
	}()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.(*tls.Conn).Handshake(); err != nil {
		t.Fatal(err)
	}
	d := <-done
	if d.err != nil {
		t.Fatal(d.err)
	}
	t.Cleanup(func() { d.c.Close() })
	if mode := s.(*tls.Conn).NetConn().(*conn).mode.Load(); mode != modePending {
		t.Fatalf("mode %d, want pending (an HTTP/1.1 connection)", mode)
	}
	return s, d.c
}
