package batchconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// sniffRead reads the first bytes the way net/http does before handing a
// connection to its HTTP/2 server: 14 bytes, then the other 10 of the
// preface, each with a read of exactly that size.
func sniffRead(tb testing.TB, c net.Conn) string {
	tb.Helper()
	var got []byte
	for _, n := range []int{14, 10} {
		got = append(got, readN(tb, c, n)...)
	}
	return string(got)
}

func TestSniffing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		send   []string // written by the client one at a time
		want   int32
		prefix string
	}{
		{name: "h2c preface", send: []string{h2Preface}, want: modeBatched},
		{name: "h2c preface in pieces", send: []string{"P", "RI * HTT", "P/2.0\r\n\r\nS", "M\r\n\r\n"}, want: modeBatched},
		{name: "http1", send: []string{"POST /connectkit.ping.v1.PingService/Ping HTTP/1.1\r\n"}, want: modePlain},
		{name: "http1 PRI lookalike", send: []string{"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n"}, want: modePlain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			server, client := pair(t, Config{})
			want := strings.Join(tc.send, "")
			go func() {
				for _, s := range tc.send {
					client.Write([]byte(s))
				}
			}()
			if got := sniffRead(t, server); got != want[:24] {
				t.Fatalf("server read %q, want %q", got, want[:24])
			}
			if got := server.mode.Load(); got != tc.want {
				t.Fatalf("mode = %d, want %d", got, tc.want)
			}
			// Either way, writes reach the peer without further ado.
			if _, err := server.Write([]byte("reply")); err != nil {
				t.Fatal(err)
			}
			if got := readN(t, client, 5); string(got) != "reply" {
				t.Fatalf("peer read %q", got)
			}
		})
	}
}

func TestPlainConnectionPassesThrough(t *testing.T) {
	t.Parallel()
	server, client := pair(t, Config{})
	go client.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	readN(t, server, 3)
	if _, err := server.Write([]byte("HTTP/1.1 200 OK\r\n")); err != nil {
		t.Fatal(err)
	}
	if !server.idle() || server.rbuf != nil {
		t.Fatal("a plain connection took a buffer or a flusher")
	}
	readN(t, client, 17)

	// ReadFrom keeps the socket's own ReadFrom (sendfile for files).
	f, err := os.CreateTemp(t.TempDir(), "body")
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("body"), 10<<10)
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer f.Close()
		if _, err := server.ReadFrom(f); err != nil {
			t.Errorf("ReadFrom: %v", err)
		}
	}()
	if got := readN(t, client, len(want)); !bytes.Equal(got, want) {
		t.Fatal("ReadFrom sent other bytes")
	}
}

func TestBufferedReads(t *testing.T) {
	t.Parallel()
	server, client := batchedPair(t, Config{ReadBufferSize: 64})
	// Many small frames arrive at once and are read 9 bytes at a time, as
	// the HTTP/2 framer reads headers.
	var frames bytes.Buffer
	for i := range 100 {
		frames.WriteString(strings.Repeat(string(rune('a'+i%26)), 9))
	}
	big := bytes.Repeat([]byte("B"), 1000) // larger than the buffer: read directly
	go func() {
		client.Write(frames.Bytes())
		client.Write(big)
		client.Write([]byte("tail"))
		client.CloseWrite()
	}()
	var got bytes.Buffer
	for range 100 {
		got.Write(readN(t, server, 9))
	}
	if !bytes.Equal(got.Bytes(), frames.Bytes()) {
		t.Fatal("buffered reads reordered or lost bytes")
	}
	if b := readN(t, server, len(big)); !bytes.Equal(b, big) {
		t.Fatal("large read lost bytes")
	}
	rest, err := io.ReadAll(server)
	if err != nil || string(rest) != "tail" {
		t.Fatalf("ReadAll = %q, %v; want %q", rest, err, "tail")
	}
	if server.rbuf != nil {
		t.Fatal("read buffer kept after EOF")
	}
}

func TestReadDeadlines(t *testing.T) {
	t.Parallel()
	server, client := batchedPair(t, Config{})
	if _, err := client.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	readN(t, server, 2) // the rest is buffered
	// An expired deadline fails reads even with bytes buffered, as on a socket.
	server.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	server.SetReadDeadline(time.Time{})
	if got := readN(t, server, 8); string(got) != "23456789" {
		t.Fatalf("read %q after clearing the deadline", got)
	}
	// A deadline set while a Read is blocked wakes it (net/http aborts
	// pending reads this way).
	errc := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		errc <- err
	}()
	eventually(t, "the Read is blocked", func() bool {
		if server.rmu.TryLock() {
			server.rmu.Unlock()
			return false
		}
		return true
	})
	server.SetDeadline(time.Now().Add(-time.Second))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked Read = %v, want os.ErrDeadlineExceeded", err)
	}
}

// opRecorder is a socket that records, in order, its reads ("read") and
// writes ("write: BYTES"). Each read returns the next of reads, then io.EOF.
type opRecorder struct {
	net.Conn // nil: only the methods below are called
	mu       sync.Mutex
	reads    []string
	ops      []string
}

func (r *opRecorder) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, "read")
	if len(r.reads) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.reads[0])
	r.reads = r.reads[1:]
	return n, nil
}

func (r *opRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, "write: "+string(p))
	return len(p), nil
}

func (r *opRecorder) SetReadDeadline(time.Time) error  { return nil }
func (r *opRecorder) SetWriteDeadline(time.Time) error { return nil }
func (r *opRecorder) Close() error                     { return nil }

// TestReadYieldsToResponse: a read that has used up the buffer lets what
// can run go first, and the flusher write what it buffered, before it
// reads the socket again. At one call in flight, that is the HTTP/2 frame
// reader, back at the socket before the handler has run: its read finds
// nothing, and would cost a system call on the call's path. One P makes
// the order all but deterministic (the flusher runs only when the reader
// yields); the test does not call t.Parallel, so that no other test runs
// while GOMAXPROCS is 1. Not every try: now and then the reader goes first
// all the same (2 % of tries under -race; likely the scheduler's fairness
// check, which takes from its global queue first every 61st round).
// Without the yields, no try does.
func TestReadYieldsToResponse(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const tries = 40
	yielded := 0
	for range tries {
		if readYieldedToResponse(t) {
			yielded++
		}
	}
	if yielded < tries*3/4 {
		t.Fatalf("the response was written before the next read in %d of %d tries, want most", yielded, tries)
	}
}

// readYieldedToResponse reads a request from a batched connection, then
// reads again while a handler writes the response, and reports whether the
// response reached the socket before the second read.
func readYieldedToResponse(t *testing.T) bool {
	t.Helper()
	sock := &opRecorder{reads: []string{"request"}}
	c := newConn(sock, &shared{cfg: Config{Mode: ModeAll}.withDefaults()})
	buf := make([]byte, 64)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "request" {
		t.Fatalf("Read = %q, %v; want %q", buf[:n], err, "request")
	}
	handled := make(chan struct{})
	go func() { // the handler, which runs once the reader yields
		defer close(handled)
		if _, err := c.Write([]byte("response")); err != nil {
			t.Error(err)
		}
	}()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read = %q, %v; want io.EOF", buf[:n], err)
	}
	<-handled
	c.Close() // flushes, if the read went first
	sock.mu.Lock()
	defer sock.mu.Unlock()
	return slices.Equal(sock.ops, []string{"read", "write: response", "read"})
}

// depthConn is a socket whose Read records where its frame is on the
// stack, and reads nothing.
type depthConn struct {
	net.Conn
	at uintptr
}

//go:noinline
func (d *depthConn) Read([]byte) (int, error) {
	var b byte
	d.at = uintptr(unsafe.Pointer(&b))
	return 0, nil
}

// readDeep reads the socket from under a frame of at least stackPad bytes:
// without it, an HTTP/1.x connection's goroutine waiting for its next
// request uses under a quarter of 16 KiB, and the garbage collector
// shrinks its stack (the runtime counts 2 872 bytes used without the
// pad, Go 1.26; 4 544 under -race, where kit's TestHTTP1StackKeptWhileIdle
// cannot tell). It fails if the pad is optimized away (see padUsed).
func TestReadDeepReservesItsPad(t *testing.T) {
	t.Parallel()
	sock := &depthConn{}
	c := &conn{Conn: sock, sh: &shared{}}
	depth := make(chan uintptr, 1)
	go func() { depth <- padDepth(c, sock) }()
	if d := <-depth; d < stackPad {
		t.Errorf("the socket's Read is %d bytes deeper under readDeep than under readSocket, want at least stackPad (%d)", d, stackPad)
	}
}

// padDepth returns how much deeper the socket's Read runs under readDeep
// than under readSocket, both called from its own frame. It holds 9 KiB
// of stack, over a quarter of any stack the goroutine needs (16 or 32
// KiB), so that no GC shrinks it; the first round grows it as needed, and
// the second, which measures, runs on a stack that does not move.
//
//go:noinline
func padDepth(c *conn, sock *depthConn) uintptr {
	var hold [9 << 10]byte
	keepHold(&hold)
	var p [16]byte
	var depth uintptr
	for range 2 {
		_, _ = c.readDeep(p[:])
		deep := sock.at
		_, _ = c.readSocket(p[:])
		depth = sock.at - deep
	}
	return depth
}

//go:noinline
func keepHold(*[9 << 10]byte) {}
