package kit_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// http1Server is a net/http server without h2c, as webhooks and legacy REST
// APIs are: it reads the h2c preface as a request "PRI * HTTP/2.0", which
// its handler gets. It records the other requests its handler got.
type http1Server struct {
	url string
	mu  sync.Mutex
	got []string // "METHOD PATH PROTO BODY"
}

// newHTTP1Server starts an http1Server that answers "PRI *" with 200, as a
// net/http handler does by default, or when refuse is set with 400 and
// the connection's close, as servers that check the method do.
func newHTTP1Server(t *testing.T, refuse bool) *http1Server {
	t.Helper()
	s := &http1Server{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body of %s %s: %v", r.Method, r.URL, err)
		}
		if r.Method == "PRI" {
			if refuse {
				w.Header().Set("Connection", "close")
				http.Error(w, "no such method", http.StatusBadRequest)
			}
			return
		}
		s.mu.Lock()
		s.got = append(s.got, fmt.Sprintf("%s %s %s %s", r.Method, r.URL.Path, r.Proto, body))
		s.mu.Unlock()
		_, _ = io.WriteString(w, "answer to "+r.Method)
	}))
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

// take returns the requests received since the last take.
func (s *http1Server) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got
	s.got = nil
	return got
}

// call sends req with client and returns the answer's body, or fails t
// unless it is a 200 over HTTP/1.1.
func call(t *testing.T, client *http.Client, req *http.Request) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" || string(body) != "answer to "+req.Method {
		t.Errorf("%s %s = %s %s %q, %v; want 200 over HTTP/1.1, %q", req.Method, req.URL, resp.Proto, resp.Status, body, err, "answer to "+req.Method)
	}
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestHTTPClientCallsHTTP1Server calls servers that speak HTTP/1.1 only
// through HTTPClient, which opens h2c connections: the first call to
// each, a GET or a POST whose body is larger than an HTTP/2 frame, is
// answered over HTTP/1.1 and reaches the handler once, body intact, as does
// the next; and the same client still calls a kit server over HTTP/2.
// Ten servers each, so that the h2c attempt fails in each of its ways
// (frame too large, a write on the reset connection, the connection not
// established).
func TestHTTPClientCallsHTTP1Server(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		refuse bool
	}{
		{name: "answers the preface", refuse: false},
		{name: "refuses the preface", refuse: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tl tally
			backend := pingBackend(t, &tl, &pingServer{})
			caller := kittest.NewServer(t, kit.Config{}, nil)
			client := caller.HTTPClient()
			payload := strings.Repeat("0123456789abcdef", 4<<10) // 64KiB
			for i := range 10 {
				h1 := newHTTP1Server(t, tc.refuse)
				post := newRequest(t, http.MethodPost, h1.url+"/post", strings.NewReader(payload))
				get := newRequest(t, http.MethodGet, h1.url+"/get", nil)
				first, then := post, get
				if i%2 == 1 {
					first, then = get, post
				}
				call(t, client, first)
				call(t, client, then)
				want := []string{"POST /post HTTP/1.1 " + payload, "GET /get HTTP/1.1 "}
				if i%2 == 1 {
					want[0], want[1] = want[1], want[0]
				}
				if got := h1.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("server %d got %d requests (%.60q); want the %s then the %s, once each, bodies intact", i, len(got), got, first.Method, then.Method)
				}
			}
			ping := pingv1connect.NewPingServiceClient(client, "http://"+backend.Addr().String(), caller.ClientOptions()...)
			for range 3 {
				if _, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
					t.Fatalf("gRPC Ping of a kit server after HTTP/1.1 ones: %v", err)
				}
			}
			if calls, http1 := tl.take(); http1 != 0 || calls[backend.Addr().String()] != 3 {
				t.Errorf("kit server got %v calls, %d over HTTP/1; want 3 over HTTP/2", calls, http1)
			}
		})
	}
}

// TestHTTPClientHTTP1BodyGone sends a POST whose body cannot be read again
// (no GetBody) as the first call to an HTTP/1.1-only server: it fails with
// an error that says why and what to do, caused by interceptors.ErrNotSent
// since no handler saw it, and the same request sent again is answered
// over HTTP/1.1 and its body arrives once.
func TestHTTPClientHTTP1BodyGone(t *testing.T) {
	t.Parallel()
	h1 := newHTTP1Server(t, false)
	client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
	streamed := func() *http.Request { // a body of unknown type: no GetBody
		return newRequest(t, http.MethodPost, h1.url+"/post", io.MultiReader(strings.NewReader("streamed")))
	}
	_, err := client.Do(streamed())
	if err == nil || !errors.Is(err, interceptors.ErrNotSent) || errors.Is(err, interceptors.ErrConnectionLost) ||
		!strings.Contains(err.Error(), "speaks HTTP/1.x only") || !strings.Contains(err.Error(), "GetBody") {
		t.Fatalf("first POST without GetBody = %v; want an error naming HTTP/1.x and GetBody, caused by interceptors.ErrNotSent", err)
	}
	if got := h1.take(); len(got) != 0 {
		t.Fatalf("server got %q of the failed POST; want nothing", got)
	}
	call(t, client, streamed())
	if got := h1.take(); len(got) != 1 || got[0] != "POST /post HTTP/1.1 streamed" {
		t.Errorf("server got %q; want the POST once, its body intact", got)
	}
}

// TestHTTPClientConnectOverHTTP1 calls a connect handler served over
// HTTP/1.1 only, with the caller's ClientOptions, in the Connect and gRPC
// protocols (connect-go serves both over HTTP/1.1): unary and
// server-streaming calls work.
func TestHTTPClientConnectOverHTTP1(t *testing.T) {
	t.Parallel()
	for _, p := range balancedProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			var tl tally
			mux := http.NewServeMux()
			path, h := pingv1connect.NewPingServiceHandler(&pingServer{})
			mux.Handle(path, tl.tag("h1", h))
			ts := httptest.NewServer(mux)
			t.Cleanup(ts.Close)
			caller := kittest.NewServer(t, kit.Config{}, nil)
			ping := pingv1connect.NewPingServiceClient(caller.HTTPClient(), ts.URL, append(caller.ClientOptions(), p.opts...)...)
			for range 2 {
				res, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 7}))
				if err != nil || res.Msg.GetNumber() != 7 {
					t.Fatalf("Ping over HTTP/1.1 = %v, %v; want 7", res, err)
				}
			}
			up, err := ping.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 3}))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for up.Receive() {
				n++
			}
			if err := up.Err(); err != nil || n != 3 {
				t.Errorf("CountUp over HTTP/1.1 gave %d messages, %v; want 3", n, err)
			}
			if calls, http1 := tl.take(); calls["h1"] != 3 || http1 != 3 {
				t.Errorf("handler got %v calls, %d over HTTP/1; want 3, all over HTTP/1", calls, http1)
			}
		})
	}
}

// closedByPeer reports whether err says the peer closed the connection:
// a reset, or EOF, or, when the peer's reset came before the request's
// write, a broken pipe (seen in CI under load).
func closedByPeer(err error) bool {
	for _, s := range []string{"reset by peer", "EOF", "broken pipe"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

// TestHTTPClientServerClosesAtOnce calls servers that close each
// connection without a byte, at once (a reset) or once they read the
// preface: the call fails with the reset or the EOF, as a connection lost
// (the request was written) or caused by interceptors.ErrNotSent (the
// connection closed before it was, which net/http calls "client conn
// could not be established"), not as a server that speaks HTTP/1.x.
func TestHTTPClientServerClosesAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		read bool
	}{
		{name: "reset", read: false},
		{name: "after reading", read: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln := closingListener(t, tc.read)
			client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				_, err := client.Do(newRequest(t, method, "http://"+ln.Addr().String()+"/", strings.NewReader("body")))
				lost, notSent := errors.Is(err, interceptors.ErrConnectionLost), errors.Is(err, interceptors.ErrNotSent)
				if err == nil || lost == notSent || strings.Contains(err.Error(), "HTTP/1") || !closedByPeer(err) {
					t.Errorf("%s to a server that closes at once = %v; want its reset, broken pipe or EOF, the connection lost or the call not sent, not HTTP/1", method, err)
				}
			}
		})
	}
}

// splitFront forwards each TCP connection it accepts on its loopback
// address to the backend that pick names for it (by the order accepted,
// from 0), as an L4 balancer in front of several servers does; cutFirst
// resets the first one.
type splitFront struct {
	ln   net.Listener
	pick func(i int) string

	mu       sync.Mutex
	accepted int
	conns    []net.Conn // all, the first two of the first connection
	wg       sync.WaitGroup
}

// newSplitFront returns a front that forwards its first connection to
// first, the others to rest.
func newSplitFront(t *testing.T, first, rest string) *splitFront {
	t.Helper()
	return newFront(t, func(i int) string {
		if i == 0 {
			return first
		}
		return rest
	})
}

// newRoundRobinFront returns a front that forwards its connections to
// backends in turn.
func newRoundRobinFront(t *testing.T, backends ...string) *splitFront {
	t.Helper()
	return newFront(t, func(i int) string { return backends[i%len(backends)] })
}

func newFront(t *testing.T, pick func(i int) string) *splitFront {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &splitFront{ln: ln, pick: pick}
	f.wg.Go(f.serve)
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *splitFront) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		target := f.pick(f.accepted)
		f.accepted++
		f.mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			_ = c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, up)
		f.mu.Unlock()
		f.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
		f.wg.Go(func() { _, _ = io.Copy(c, up); _ = c.Close() })
	}
}

// cutFirst resets the first connection, both sides.
func (f *splitFront) cutFirst() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns[:2] {
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}
}

// TestHTTPClientCallLostNotSentAgainOverHTTP1 calls an address behind
// which an h2c server and an HTTP/1.1-only one both answer (an L4 balancer
// during a rollout): a POST reaches the h2c server's handler, a GET meanwhile
// finds the HTTP/1.1 one on a connection of its own (the h2c server takes
// one stream at a time) and is answered over HTTP/1.1, then the POST's
// connection is reset. The POST, which a handler saw, fails as a
// connection lost: it is not sent again over HTTP/1.1 (which handled it
// twice), nor, when its body cannot be sent again, said to be
// interceptors.ErrNotSent (which Retry would send again).
func TestHTTPClientCallLostNotSentAgainOverHTTP1(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{name: "resendable body", body: func() io.Reader { return strings.NewReader("once") }},
		{name: "streamed body", body: func() io.Reader { return io.MultiReader(strings.NewReader("once")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			entered := make(chan string, 1)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var protocols http.Protocols
			protocols.SetUnencryptedHTTP2(true)
			h2 := &http.Server{Protocols: &protocols, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1},
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					entered <- r.Method + " " + string(body)
					<-r.Context().Done()
				})}
			go func() { _ = h2.Serve(ln) }()
			t.Cleanup(func() { _ = h2.Close() })
			h1 := newHTTP1Server(t, false)
			front := newSplitFront(t, ln.Addr().String(), strings.TrimPrefix(h1.url, "http://"))
			url := "http://" + front.ln.Addr().String()
			client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()

			errc := make(chan error, 1)
			go func() {
				resp, err := client.Do(newRequest(t, http.MethodPost, url+"/post", tc.body()))
				if err == nil {
					_ = resp.Body.Close()
				}
				errc <- err
			}()
			if got := <-entered; got != "POST once" {
				t.Fatalf("h2c handler got %q", got)
			}
			call(t, client, newRequest(t, http.MethodGet, url+"/get", nil))
			front.cutFirst()
			err = <-errc
			if err == nil || !errors.Is(err, interceptors.ErrConnectionLost) || errors.Is(err, interceptors.ErrNotSent) {
				t.Errorf("POST whose handler saw it, its connection reset = %v; want the connection lost, not interceptors.ErrNotSent", err)
			}
			if got := h1.take(); len(got) != 1 || got[0] != "GET /get HTTP/1.1 " {
				t.Errorf("HTTP/1.1 server got %q; want the GET alone", got)
			}
		})
	}
}

// TestHTTPClientConcurrentFirstCallsToHTTP1Server makes 20 calls at once,
// the first to each of 5 HTTP/1.1-only servers: every POST whose body can
// be sent again is answered over HTTP/1.1 and reaches the handler once; one
// whose body cannot either does too or fails caused by
// interceptors.ErrNotSent, and then reaches no handler.
func TestHTTPClientConcurrentFirstCallsToHTTP1Server(t *testing.T) {
	t.Parallel()
	client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
	for range 5 {
		h1 := newHTTP1Server(t, false)
		var wg sync.WaitGroup
		failed := make([]error, 20)
		for i := range failed {
			wg.Go(func() {
				var body io.Reader = strings.NewReader("body")
				if i%2 == 1 {
					body = io.MultiReader(body) // no GetBody
				}
				resp, err := client.Do(newRequest(t, http.MethodPost, fmt.Sprintf("%s/%d", h1.url, i), body))
				if err != nil {
					failed[i] = err
					return
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" {
					t.Errorf("POST %d = %s %s; want 200 over HTTP/1.1", i, resp.Proto, resp.Status)
				}
			})
		}
		wg.Wait()
		got := map[string]int{}
		for _, r := range h1.take() {
			got[r]++
		}
		for i, err := range failed {
			want := 1
			if err != nil {
				want = 0
				if i%2 == 0 || !errors.Is(err, interceptors.ErrNotSent) {
					t.Errorf("POST %d failed: %v; want it answered, or not sent when its body cannot be sent again", i, err)
				}
			}
			if n := got[fmt.Sprintf("POST /%d HTTP/1.1 body", i)]; n != want {
				t.Errorf("POST %d (error %v) reached the handler %d times; want %d", i, err, n, want)
			}
		}
	}
}

// TestHTTPClientHTTP1ConnectionsCapped makes a burst of calls to an
// HTTP/1.1-only server, more at once than kit.DefaultMaxConcurrentStreams,
// the cap of HTTP/1.1 connections to one address: its handler holds each
// call until as many as the cap are in, then lets all go. Every call is
// answered, and the burst opened no more connections than the cap: the
// calls beyond it waited for a connection, where each opened its own.
func TestHTTPClientHTTP1ConnectionsCapped(t *testing.T) {
	t.Parallel()
	const burst = kit.DefaultMaxConcurrentStreams + 50
	var (
		conns    atomic.Int32
		mu       sync.Mutex
		inflight int
		release  = make(chan struct{})
	)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PRI" {
			return
		}
		mu.Lock()
		inflight++
		if inflight == kit.DefaultMaxConcurrentStreams {
			close(release)
		}
		mu.Unlock()
		if r.URL.Path == "/burst" {
			<-release
		}
		_, _ = io.WriteString(w, "answer to "+r.Method)
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	client := kittest.NewServer(t, kit.Config{}, nil).HTTPClient()
	call(t, client, newRequest(t, http.MethodGet, ts.URL+"/first", nil)) // the h2c attempt, then over HTTP/1.1
	before := conns.Load()
	var wg sync.WaitGroup
	for range burst - 1 { // the first counts in inflight
		wg.Go(func() { call(t, client, newRequest(t, http.MethodGet, ts.URL+"/burst", nil)) })
	}
	wg.Wait()
	if opened := conns.Load() - before; opened > kit.DefaultMaxConcurrentStreams {
		t.Errorf("a burst of %d calls opened %d connections; want at most %d", burst-1, opened, kit.DefaultMaxConcurrentStreams)
	}
}

// closingListener returns a loopback listener that closes each connection
// it accepts, after reading up to 1 KiB of it when read is set.
func closingListener(t *testing.T, read bool) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if read {
				_, _ = c.Read(make([]byte, 1024))
			}
			_ = c.Close()
		}
	}()
	return ln
}
