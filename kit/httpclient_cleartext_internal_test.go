package kit

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bufbuild/httplb"
)

// newTestCleartext returns the round tripper of the http:// address addr,
// dialling it directly.
func newTestCleartext(t *testing.T, addr string) *cleartextTransport {
	t.Helper()
	tr := newCleartextTransport(addr, httplb.TransportConfig{DialFunc: (&net.Dialer{Timeout: time.Second}).DialContext, IdleConnTimeout: time.Minute},
		slog.New(slog.DiscardHandler))
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// loopbackListener listens on a loopback port until the test ends.
func loopbackListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// TestSniffConnReadsTheAnswerOfAResetConnection opens a connection to a
// server that answers the preface in HTTP/1.1 and closes with bytes
// unread (a reset), and reads nothing from it, as net/http's reader may
// not have when a write fails: the failed write still finds the server's
// "HTTP/1.", is taken as done (net/http would close the connection with an
// error of its own), and the connection's reads say that its server
// answered in HTTP/1.x.
func TestSniffConnReadsTheAnswerOfAResetConnection(t *testing.T) {
	t.Parallel()
	ln := loopbackListener(t)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.ReadFull(c, make([]byte, len("PRI * HTTP/2.0\r\n\r\n")))
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
		_ = c.Close() // the rest of the preface unread: a reset
	}()
	tr := newTestCleartext(t, ln.Addr().String())
	c, err := tr.dial(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"+strings.Repeat("\x00", 64)); err != nil {
		t.Fatal(err)
	}
	<-closed
	for i := 0; tr.http1Since.Load() == 0 && i < 100; i++ { // until a write fails, after the reset came
		time.Sleep(10 * time.Millisecond)
		if _, err := c.Write(make([]byte, 64)); err != nil {
			t.Fatalf("write to a connection whose server answered in HTTP/1.1: %v", err)
		}
	}
	if tr.http1Since.Load() == 0 {
		t.Fatal("after the failed write, the server's HTTP/1.1 answer was not seen")
	}
	var answered *http1AnswerError
	if _, err := c.Read(make([]byte, 64)); !errors.As(err, &answered) {
		t.Errorf("read after the answer = %v; want an http1AnswerError", err)
	}
}

// watchedConn counts the reads and read deadlines of a connection.
type watchedConn struct {
	net.Conn
	reads, deadlines atomic.Int32
}

func (c *watchedConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c *watchedConn) SetReadDeadline(t time.Time) error {
	c.deadlines.Add(1)
	return c.Conn.SetReadDeadline(t)
}

// TestSniffConnClosesAtOnce closes a connection whose server has sent
// nothing yet, as net/http closes an idle one at shutdown or once its ping
// went unanswered: nothing is read from it, nor waited for (the close
// held the HTTP/2 pool's lock sniffWait while it read).
func TestSniffConnClosesAtOnce(t *testing.T) {
	t.Parallel()
	ln := loopbackListener(t)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c) // reads, never answers
			_ = c.Close()
		}
	}()
	var watched *watchedConn
	tr := newCleartextTransport(ln.Addr().String(), httplb.TransportConfig{DialFunc: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		watched = &watchedConn{Conn: c}
		return watched, nil
	}}, slog.New(slog.DiscardHandler))
	c, err := tr.dial(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if reads, deadlines := watched.reads.Load(), watched.deadlines.Load(); reads != 0 || deadlines != 0 {
		t.Errorf("close made %d reads and set %d read deadlines; want none", reads, deadlines)
	}
}

// TestCleartextTransportH2C calls an h2c server that speaks HTTP/2 alone:
// over HTTP/2, and no HTTP/1.1 transport is made. Then, as if an HTTP/1.x
// server had been at its address, GETs go over HTTP/1.1 and fail, the
// server closing the connection without a byte: the address is no longer
// known to speak HTTP/1.x once silentCloses GETs in a row failed so, and
// the next calls, one whose body cannot be sent again among them, go over
// HTTP/2.
func TestCleartextTransportH2C(t *testing.T) {
	t.Parallel()
	addr := h2cServer(t)
	tr := newTestCleartext(t, addr)
	send := func(body io.Reader) {
		t.Helper()
		method := http.MethodGet
		if body != nil {
			method = http.MethodPost
		}
		resp, err := tr.RoundTrip(httptest.NewRequestWithContext(t.Context(), method, "http://"+addr+"/", body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("%s of an h2c server went over %s", method, resp.Proto)
		}
	}
	send(nil)
	send(nil)
	if tr.http1Since.Load() != 0 || tr.http1.Load() != nil || tr.silent.Load() != nil {
		t.Errorf("h2c server taken for an HTTP/1.x one (%d), or HTTP/1.1 transport made (%v)", tr.http1Since.Load(), tr.http1.Load() != nil)
	}
	tr.http1Since.Store(1) // an HTTP/1.x server's
	tr.h1Streak.Store(5)
	tr.CloseIdleConnections()
	for i := range silentCloses {
		if resp, err := tr.RoundTrip(httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/", nil)); err == nil {
			_ = resp.Body.Close()
			t.Fatalf("GET %d over HTTP/1.1 of a server that speaks HTTP/2 alone = %s; want its close", i, resp.Proto)
		}
		if known := tr.http1Since.Load() != 0; known != (i < silentCloses-1) {
			t.Fatalf("after %d HTTP/1.1 connections in a row closed without a byte, known to speak HTTP/1.x = %v; want it until %d", i+1, known, silentCloses)
		}
	}
	send(nil)
	send(io.MultiReader(strings.NewReader("streamed")))
}

// TestHTTP1Remembered calls an HTTP/1.1-only server: its first call
// tries h2c (the server sees "PRI *"), the next do not, however long ago
// the server was found so (no clock sends it the preface again). A call
// made for HTTP/2 (gRPC's content type) probes h2c: the first at once,
// and the next right after, twice in all (probeFreely), then not before
// probeWait, and the one after it not before twice that; each ends over
// HTTP/1.1, where the server answers it.
func TestHTTP1Remembered(t *testing.T) {
	t.Parallel()
	var pri, calls atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PRI" {
			pri.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		calls.Add(1)
	}))
	t.Cleanup(ts.Close)
	tr := newTestCleartext(t, ts.Listener.Addr().String())
	send := func(contentType string, body io.Reader, wantPRI int32) {
		t.Helper()
		method := http.MethodGet
		if body != nil {
			method = http.MethodPost
		}
		req, err := http.NewRequestWithContext(t.Context(), method, ts.URL, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, contentType, err)
		}
		_ = resp.Body.Close()
		if resp.Proto != "HTTP/1.1" || pri.Load() != wantPRI {
			t.Errorf("%s %s went over %s after %d h2c prefaces; want HTTP/1.1 after %d", method, contentType, resp.Proto, pri.Load(), wantPRI)
		}
	}
	send("", nil, 1)
	send("", nil, 1)
	send("application/json", strings.NewReader("resendable"), 1)
	tr.http1Since.Store(1) // found so long ago
	send("application/proto", io.MultiReader(strings.NewReader("streamed")), 1)
	send("", nil, 1)
	send("application/grpc-web+proto", strings.NewReader("resendable"), 1)
	// The schedule's times are checked against those around the call
	// that took the turn, and the calls that must not probe are made as
	// if still within the wait, however slow the machine.
	nextProbe := func(before, after time.Time, wait time.Duration) {
		t.Helper()
		if next := time.Unix(0, tr.probeAfter.Load()); next.Before(before.Add(wait)) || next.After(after.Add(wait)) {
			t.Errorf("next probe at %v; want %v after the call that probed, in %v to %v", next, wait, before.Add(wait), after.Add(wait))
		}
		tr.probeAfter.Store(time.Now().Add(time.Hour).UnixNano())
	}
	before := time.Now()
	send("application/grpc", strings.NewReader("resendable"), 3) // two probes
	nextProbe(before, time.Now(), probeWait)
	send("application/grpc+proto", strings.NewReader("resendable"), 3)
	send("application/connect+proto", io.MultiReader(strings.NewReader("streamed")), 3)
	tr.probeAfter.Store(1) // probeWait later
	before = time.Now()
	send("application/grpc", strings.NewReader("resendable"), 4)
	nextProbe(before, time.Now(), 2*probeWait)
	send("application/grpc", strings.NewReader("resendable"), 4)
	if calls.Load() != 11 {
		t.Errorf("handler got %d calls; want 11", calls.Load())
	}
}

// TestH2StateSeesAConcurrentAnswer has connections' servers answer in
// HTTP/2 one after another, none closed, while RoundTrip's h2State is
// taken over and over: each connection counted in the state's h2Answers
// must be in its h2Open, or a call that such a connection carries, failed
// by its close, is taken for one that no HTTP/2 server saw (refusedAsHTTP1's
// noH2: h2Open 0 then, h2Answers unchanged since) and sent again over
// HTTP/1.1. It fails when h2State loads h2Open first.
func TestH2StateSeesAConcurrentAnswer(t *testing.T) {
	t.Parallel()
	const conns = 20000
	tr := &cleartextTransport{addr: "127.0.0.1:1", logger: slog.New(slog.DiscardHandler)}
	settings := []byte{0, 0, 18, 4} // an HTTP/2 server's first bytes
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for range conns {
			(&sniffConn{peer: tr}).look(settings, nil)
		}
	}()
	states, missed := 0, 0
	for done := false; !done; states++ {
		select {
		case <-answered:
			done = true
		default:
		}
		if answers, open := tr.h2State(); open < answers {
			missed++
		}
	}
	if missed > 0 {
		t.Errorf("%d of %d states: h2Answers counted connections, open, that h2Open did not", missed, states)
	}
	if answers, open := tr.h2State(); answers != conns || open != conns {
		t.Errorf("after %d answers: h2Answers %d, h2Open %d", conns, answers, open)
	}
}
