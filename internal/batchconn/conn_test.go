package batchconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor is how long a test waits for a condition before it fails. It is
// generous: tests never assert durations, they wait for conditions.
const waitFor = 20 * time.Second

// pair returns a connection accepted through a batchconn listener built
// from cfg, and the client end of it.
func pair(tb testing.TB, cfg Config) (*conn, *net.TCPConn) {
	tb.Helper()
	ln := listen(tb, cfg)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { server.Close() })
	return server.(*conn), client.(*net.TCPConn)
}

// listen returns a batchconn listener built from cfg on a loopback port,
// closed at the end of the test.
func listen(tb testing.TB, cfg Config) net.Listener {
	tb.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := NewListener(inner, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// batchedPair is pair with every connection batched.
func batchedPair(tb testing.TB, cfg Config) (*conn, *net.TCPConn) {
	tb.Helper()
	cfg.Mode = ModeAll
	return pair(tb, cfg)
}

// readN reads exactly n bytes from c, failing the test after waitFor.
func readN(tb testing.TB, c net.Conn, n int) []byte {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(waitFor))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		tb.Fatalf("reading %d bytes: %v", n, err)
	}
	return buf
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("still not true after %s: %s", waitFor, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// idle reports whether c holds no flusher goroutine and no write buffer.
func (c *conn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.flushing && c.pend == nil && c.spare == nil
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "zero", cfg: Config{}},
		{name: "mode", cfg: Config{Mode: 7}, want: "Mode 7 is unknown"},
		{name: "buffer", cfg: Config{MaxBufferedBytes: -1}, want: "MaxBufferedBytes -1 is negative"},
		{name: "read buffer", cfg: Config{ReadBufferSize: -2}, want: "ReadBufferSize -2 is negative"},
		{name: "flush timeout", cfg: Config{FlushTimeout: -time.Second}, want: "FlushTimeout -1s is negative"},
		{name: "close grace", cfg: Config{CloseGrace: -time.Second}, want: "CloseGrace -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.want)
			}
			inner, lerr := net.Listen("tcp", "127.0.0.1:0")
			if lerr != nil {
				t.Fatal(lerr)
			}
			defer inner.Close()
			if _, err := NewListener(inner, tc.cfg); err == nil {
				t.Fatal("NewListener accepted an invalid config")
			}
		})
	}
}

func TestLoneWriteReachesPeer(t *testing.T) {
	t.Parallel()
	server, client := batchedPair(t, Config{})
	if _, err := server.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// Nothing else is written: the flusher must send these bytes by itself.
	if got := readN(t, client, 5); string(got) != "hello" {
		t.Fatalf("peer read %q, want %q", got, "hello")
	}
	eventually(t, "flusher exits once the buffer is empty", server.idle)
	// A second lone write after the flusher exited starts a new one.
	if _, err := server.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, client, 5); string(got) != "again" {
		t.Fatalf("peer read %q, want %q", got, "again")
	}
}

func TestConcurrentWritersKeepOrder(t *testing.T) {
	t.Parallel()
	const writers, records = 8, 1000
	// A small bound makes writers block and the buffer cycle often.
	server, client := batchedPair(t, Config{MaxBufferedBytes: 256})
	var wg sync.WaitGroup
	// On a failure the writers still run: closing the conn ends them before
	// the test does, so none reports to a finished test.
	defer func() {
		server.Close()
		wg.Wait()
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range records {
				// Each record is one Write: it must arrive contiguous.
				if _, err := fmt.Fprintf(server, "w%02d r%06d %s\n", w, i, strings.Repeat("x", i%300)); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	next := make([]int, writers)
	rd := bufio.NewReader(client)
	for got := 0; got < writers*records; got++ {
		// The deadline bounds a stall, not the whole transfer, which under
		// -race on a loaded machine takes longer than waitFor. A read that
		// fails is reported as such, never as a torn record (bufio.Scanner
		// hands out the partial line it holds when the read fails).
		client.SetReadDeadline(time.Now().Add(waitFor))
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d records: %v (partial record %q)", got, err, line)
		}
		line = strings.TrimSuffix(line, "\n")
		var w, i int
		var pad string
		if _, err := fmt.Sscanf(line, "w%02d r%06d %s", &w, &i, &pad); err != nil && i%300 != 0 {
			t.Fatalf("record %q is torn: %v", line, err)
		}
		if w < 0 || w >= writers || i != next[w] || len(pad) != i%300 {
			t.Fatalf("record %q out of order or torn: want writer %d's record %d", line, w, next[w])
		}
		next[w]++
	}
	wg.Wait()
}

func TestCloseFlushes(t *testing.T) {
	t.Parallel()
	server, client := batchedPair(t, Config{MaxBufferedBytes: 4 << 10})
	want := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	done := make(chan error, 1)
	go func() {
		if _, err := server.Write(want); err != nil {
			done <- err
			return
		}
		done <- server.Close()
	}()
	client.SetReadDeadline(time.Now().Add(waitFor))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("peer read %d bytes, want %d", len(got), len(want))
	}
	if err := <-done; err != nil {
		t.Fatalf("Write or Close: %v", err)
	}
	if _, err := server.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

func TestCloseWriteFlushes(t *testing.T) {
	t.Parallel()
	server, client := batchedPair(t, Config{})
	if _, err := server.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := server.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(waitFor))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "bye" {
		t.Fatalf("peer read %q, %v; want %q, EOF", got, err, "bye")
	}
}

// stalledPair is a batched pair with small socket buffers whose client never
// reads.
func stalledPair(tb testing.TB, cfg Config) *conn {
	tb.Helper()
	server, client := batchedPair(tb, cfg)
	if err := client.SetReadBuffer(4 << 10); err != nil {
		tb.Fatal(err)
	}
	if err := server.Conn.(*net.TCPConn).SetWriteBuffer(4 << 10); err != nil {
		tb.Fatal(err)
	}
	return server
}

// writeUntilError writes chunks to c until a Write fails (the peer never
// reads), or fails the test after 1 GiB.
func writeUntilError(tb testing.TB, c net.Conn) error {
	tb.Helper()
	chunk := make([]byte, 16<<10)
	for range 64 << 10 {
		if _, err := c.Write(chunk); err != nil {
			return err
		}
	}
	tb.Fatal("1 GiB written to a peer that never reads")
	return nil
}

func TestPeerThatNeverReadsIsCut(t *testing.T) {
	t.Parallel()
	server := stalledPair(t, Config{FlushTimeout: 50 * time.Millisecond, MaxBufferedBytes: 8 << 10})
	err := writeUntilError(t, server)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write = %v, want a deadline error", err)
	}
	// The error sticks, and the socket is closed so readers fail as well.
	if _, err2 := server.Write([]byte("x")); !errors.Is(err2, os.ErrDeadlineExceeded) {
		t.Fatalf("next Write = %v, want the same deadline error", err2)
	}
	server.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after the cut = %v, want net.ErrClosed", err)
	}
	eventually(t, "flusher exits after the cut", server.idle)
	if err := server.Close(); err != nil {
		t.Fatalf("Close after the cut = %v, want nil", err)
	}
}

func TestUserWriteDeadlineBoundsBlockedWrite(t *testing.T) {
	t.Parallel()
	// FlushTimeout is long: the user's earlier deadline must cut the flush.
	server := stalledPair(t, Config{FlushTimeout: time.Hour, MaxBufferedBytes: 8 << 10})
	if err := server.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	err := writeUntilError(t, server)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Write = %v, want a timeout", err)
	}
}

func TestCloseGraceBoundsClose(t *testing.T) {
	t.Parallel()
	server := stalledPair(t, Config{FlushTimeout: time.Hour, CloseGrace: 50 * time.Millisecond, MaxBufferedBytes: 8 << 10})
	// Fill the socket and the buffer without blocking forever: a writer in
	// the background, stopped by Close.
	werr := make(chan error, 1)
	go func() { werr <- writeUntilError(t, server) }()
	eventually(t, "the flusher is blocked on a full socket", func() bool {
		server.mu.Lock()
		defer server.mu.Unlock()
		return server.pend != nil && len(*server.pend) == server.sh.cfg.MaxBufferedBytes
	})
	if err := server.Close(); err != nil {
		t.Fatalf("Close = %v, want nil after the grace period cut the flush", err)
	}
	if err := <-werr; err == nil {
		t.Fatal("blocked Write returned nil after Close")
	}
	if !server.idle() {
		t.Fatal("Close returned with a flusher still running")
	}
}

func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	t.Parallel()
	const conns = 50
	servers := make([]*conn, conns)
	for i := range servers {
		server, client := batchedPair(t, Config{})
		servers[i] = server
		if _, err := server.Write(bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
			t.Fatal(err)
		}
		readN(t, client, 100)
	}
	for i, s := range servers {
		eventually(t, fmt.Sprintf("connection %d goes idle", i), s.idle)
	}
}

// stalledConns accepts n batched connections through one listener built
// from cfg, whose clients never read, and fills each one's socket and write
// buffer with a writer in the background (which fails once the connection
// closes).
func stalledConns(tb testing.TB, cfg Config, n int) (net.Listener, []*conn) {
	tb.Helper()
	cfg.Mode = ModeAll
	ln := listen(tb, cfg)
	servers := make([]*conn, n)
	for i := range servers {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { client.Close() })
		if err := client.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
			tb.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		server := c.(*conn)
		tb.Cleanup(func() { server.Close() })
		if err := server.Conn.(*net.TCPConn).SetWriteBuffer(4 << 10); err != nil {
			tb.Fatal(err)
		}
		go func() { _ = writeUntilError(tb, server) }()
		servers[i] = server
	}
	for i, server := range servers {
		eventually(tb, fmt.Sprintf("connection %d's buffer is full", i), func() bool {
			server.mu.Lock()
			defer server.mu.Unlock()
			return server.pend != nil && len(*server.pend) == server.sh.cfg.MaxBufferedBytes
		})
	}
	return ln, servers
}

// A server that forces its connections closed closes them one after
// another (net/http's Server.Close): after SkipCloseGrace, connections
// whose peers stopped reading must not cost CloseGrace each.
func TestSkipCloseGraceClosesStalledConnectionsAtOnce(t *testing.T) {
	t.Parallel()
	const (
		n     = 20
		grace = 3 * time.Second
	)
	ln, servers := stalledConns(t, Config{FlushTimeout: time.Hour, CloseGrace: grace, MaxBufferedBytes: 8 << 10}, n)
	SkipCloseGrace(ln)
	begin := time.Now()
	for i, server := range servers {
		if err := server.Close(); err != nil {
			t.Fatalf("Close of connection %d = %v, want nil", i, err)
		}
		if !server.idle() {
			t.Fatalf("Close of connection %d returned with a flusher still running", i)
		}
	}
	// Generous: one grace per connection would be 20.
	if d := time.Since(begin); d >= 2*grace {
		t.Fatalf("closing %d stalled connections took %s, want under %s (CloseGrace is %s)", n, d, 2*grace, grace)
	}
}

// crypto/tls's Close writes a close_notify alert before it closes the
// connection beneath; after SkipCloseGrace, that Write must not wait for
// room in a full buffer.
func TestSkipCloseGraceFailsWriteToFullBuffer(t *testing.T) {
	t.Parallel()
	server, client := batchedPair(t, Config{FlushTimeout: time.Hour, MaxBufferedBytes: 8 << 10})
	// One Write far larger than the sockets' buffers, to a peer that never
	// reads, holds the socket's write lock until Close cuts it: once it has
	// begun (the peer sees its first byte), every flush blocks behind it.
	big := make(chan error, 1)
	go func() { _, err := server.Conn.Write(make([]byte, 64<<20)); big <- err }()
	readN(t, client, 1)
	// The flusher takes the first bytes and blocks for good; then fill the
	// buffer with Writes that each fit, so that none is left waiting for
	// room. Waiting only for the buffer to look full let a flusher slow to
	// take it (a loaded machine) empty it after the check.
	chunk := make([]byte, 1<<10)
	if _, err := server.Write(chunk); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the flusher took the first bytes, blocked behind the big write", func() bool {
		server.mu.Lock()
		defer server.mu.Unlock()
		return server.flushing && (server.pend == nil || len(*server.pend) == 0)
	})
	for {
		server.mu.Lock()
		full := server.pend != nil && len(*server.pend) == server.sh.cfg.MaxBufferedBytes
		server.mu.Unlock()
		if full {
			break
		}
		if _, err := server.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	SkipCloseGrace(&listener{sh: server.sh}) // the listener of server's pair
	werr := make(chan error, 1)
	go func() { _, err := server.Write([]byte("x")); werr <- err }()
	select {
	case err := <-werr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write = %v, want net.ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("Write to a full buffer still waiting %s after SkipCloseGrace", waitFor)
	}
	if err := server.Close(); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	if err := <-big; err == nil {
		t.Error("the big write to a peer that never reads succeeded")
	}
}

func TestSkipCloseGraceIgnoresOtherListeners(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	SkipCloseGrace(inner) // no panic, nothing to do
}
