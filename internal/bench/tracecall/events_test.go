package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/trace"
	"strings"
	"sync"
	"testing"

	xtrace "golang.org/x/exp/trace"
)

// TestCountEvents traces a real HTTP/1.1 server on loopback answering
// calls one at a time on one connection and checks what -events counts: a
// call for each response written, and net/http's background read of the
// connection, which it starts once a request's body has been read,
// created once a call by the connection's goroutine.
func TestCountEvents(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		runtime.Gosched() // counted as a yield
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	url := "http://" + ln.Addr().String() + "/"

	const calls = 50
	ec := traceCalls(t, func() error {
		for range calls {
			resp, err := client.Post(url, "text/plain", strings.NewReader(`{"number":42}`))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil
	})
	if ec.calls != calls {
		t.Errorf("calls = %d, want %d", ec.calls, calls)
	}
	created := ec.countPrefix("create: http.(*connReader).backgroundRead  by: http.(*connReader).startBackgroundRead")
	if created != calls {
		t.Errorf("background reads created = %d, want %d; counts: %v", created, calls, ec.counts)
	}
	yields := ec.countPrefix("yield: runtime.Gosched < tracecall.TestCountEvents.func1")
	if yields != calls {
		t.Errorf("the handler's yields = %d, want %d; counts: %v", yields, calls, ec.counts)
	}
	if ec.ran["conn (h2 serve loop; HTTP/1 handler)"] <= 0 {
		t.Errorf("no running time for the connection's goroutine: %v", ec.ran)
	}
	var out bytes.Buffer
	if err := ec.print(&out, 0.5); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "calls 50;") || !strings.Contains(out.String(), "backgroundRead") {
		t.Errorf("print wrote:\n%s", out.String())
	}
}

// TestCountEventsHTTP2 checks that over HTTP/2 (h2c, prior knowledge),
// where a response takes several socket writes from goroutines of their
// own, -events counts a call for each request given a handler goroutine.
func TestCountEventsHTTP2(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	client := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	t.Cleanup(client.CloseIdleConnections)
	url := "http://" + ln.Addr().String() + "/"

	const calls = 20
	ec := traceCalls(t, func() error {
		for range calls {
			resp, err := client.Post(url, "text/plain", strings.NewReader("ping"))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				return fmt.Errorf("served over %s, want HTTP/2", resp.Proto)
			}
		}
		return nil
	})
	if ec.calls != calls {
		t.Errorf("calls = %d, want %d; counts: %v", ec.calls, calls, ec.counts)
	}
}

// countPrefix sums the counts whose keys start with prefix.
func (ec *eventCounts) countPrefix(prefix string) int {
	n := 0
	for k, v := range ec.counts {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// traceMu keeps the tests' traces apart: a process has one runtime trace
// at a time.
var traceMu sync.Mutex

// traceCalls returns what countEvents counts in a trace of run.
func traceCalls(t *testing.T, run func() error) *eventCounts {
	t.Helper()
	traceMu.Lock()
	defer traceMu.Unlock()
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	err := run()
	trace.Stop()
	if err != nil {
		t.Fatal(err)
	}
	ec, err := countEvents(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return ec
}

// TestProcOfMoved checks that a goroutine is counted as resumed on another
// P only when the P it runs on differs from the one it last ran on.
func TestProcOfMoved(t *testing.T) {
	t.Parallel()
	m := procOf{}
	for i, tc := range []struct {
		g    xtrace.GoID
		p    xtrace.ProcID
		want bool
	}{
		{g: 1, p: 0, want: false}, // first run
		{g: 1, p: 0, want: false},
		{g: 2, p: 1, want: false}, // another goroutine's first run
		{g: 1, p: 1, want: true},
		{g: 1, p: 1, want: false},
		{g: 2, p: 0, want: true},
	} {
		if got := m.moved(tc.g, tc.p); got != tc.want {
			t.Errorf("step %d: moved(%d, %d) = %v, want %v", i, tc.g, tc.p, got, tc.want)
		}
	}
}
