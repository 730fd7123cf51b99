package kit_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/health"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// The tests of this file set NOTIFY_SOCKET and the watchdog's variables,
// which kit reads from the environment as systemd passes them: they
// cannot run in parallel (t.Setenv), and run before the parallel tests.

// notifySocket listens on a unixgram socket, at a path in a temporary
// directory or, when abstract is set, at an abstract name ("@…"), and
// sets NOTIFY_SOCKET to it. The messages it receives arrive on the
// returned channel, as sent.
func notifySocket(t *testing.T, abstract bool) <-chan string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify.sock")
	if abstract {
		name = "@connectkit-test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", name)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	msgs := make(chan string, 1000)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return msgs
}

// recv returns the next message, failing the test if none comes within a
// minute (a server that sends nothing).
func recv(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatal("notify socket closed")
		}
		return m
	case <-time.After(time.Minute):
		t.Fatal("no message from the server within a minute")
	}
	return ""
}

// expect checks that m's lines are want's, in order, and then an
// EXTEND_TIMEOUT_USEC line of extend + 5s when extend is not zero.
func expect(t *testing.T, m string, extend time.Duration, want ...string) {
	t.Helper()
	if extend != 0 {
		want = append(want, "EXTEND_TIMEOUT_USEC="+strconv.FormatInt((extend+5*time.Second).Microseconds(), 10))
	}
	if got := strings.Split(m, "\n"); !equal(got, want) {
		t.Fatalf("message %q, want %q", got, want)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestSystemdNotify runs a server under a fake systemd: READY=1 comes once
// its critical check has passed, then STOPPING=1 and a STATUS= line for
// each stage of the shutdown, each with its EXTEND_TIMEOUT_USEC; the
// calls in flight are counted. A watchdog meant for another process
// (WATCHDOG_PID) sends no ping: one among these messages fails the test.
func TestSystemdNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(map[bool]string{false: "path", true: "abstract"}[abstract], func(t *testing.T) {
			msgs := notifySocket(t, abstract)
			t.Setenv("WATCHDOG_USEC", "1000") // every half millisecond, were it ours
			t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
			var events *health.Reporter
			svc := blockingPing()
			srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
				srv.Mount(pingv1connect.NewPingServiceHandler(svc, srv.HandlerOptions()...))
				var err error
				if events, err = srv.Health().AddReporter(health.Check{Name: "events"}); err != nil {
					t.Fatal(err)
				}
			})
			expect(t, recv(t, msgs), 0, "STATUS=starting: waiting for readiness checks: events")
			events.Report(nil)
			expect(t, recv(t, msgs), 0, "READY=1", "STATUS=serving on "+srv.Addr().String())

			called := make(chan error, 1)
			go func() {
				_, err := newPingClient(srv, srv.HTTP2Client()).Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
				called <- err
			}()
			<-svc.entered
			stopped := make(chan error, 1)
			go func() { stopped <- srv.Stop() }()
			expect(t, recv(t, msgs), 2*kit.DefaultShutdownTimeout+3*time.Second,
				"STOPPING=1", "STATUS=shutting down (context canceled): reported NOT_SERVING")
			expect(t, recv(t, msgs), kit.DefaultShutdownTimeout+time.Second,
				"STATUS=stopping: waiting for the calls in flight: 1 (up to 15s)")
			close(svc.block)
			m := recv(t, msgs)
			if m == "STATUS=stopping: waiting for the calls in flight: 0 (up to 15s)" { // if counted before the drain ended
				m = recv(t, msgs)
			}
			expect(t, m, kit.DefaultShutdownTimeout, "STATUS=stopping background components (up to 15s)")
			m = recv(t, msgs)
			if !strings.HasPrefix(m, "STATUS=closing the HTTP client, flushing traces, closing the admin listener\nEXTEND_TIMEOUT_USEC=") {
				t.Fatalf("message %q, want the closing stage", m)
			}
			expect(t, recv(t, msgs), 0, "STATUS=shutdown complete")
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			if err := <-called; err != nil {
				t.Fatalf("the call in flight: %v", err)
			}
		})
	}
}

// TestSystemdWatchdog checks that WATCHDOG=1 is sent while liveness holds,
// not while a liveness check fails (which STATUS= says), and again once it
// recovers.
func TestSystemdWatchdog(t *testing.T) {
	msgs := notifySocket(t, false)
	t.Setenv("WATCHDOG_USEC", "100000") // a ping every 50ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var heart *health.Reporter
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		var err error
		if heart, err = srv.Health().AddReporter(health.Check{Name: "heart", Liveness: true}); err != nil {
			t.Fatal(err)
		}
		heart.Report(nil)
	})
	pings := 0
	for ready := false; !ready || pings < 3; {
		switch m := recv(t, msgs); {
		case m == "WATCHDOG=1":
			pings++
		case strings.HasPrefix(m, "READY=1\n"):
			ready = true
		default:
			t.Fatalf("message %q, want READY=1 and pings", m)
		}
	}
	heart.Report(errors.New("stuck"))
	for i, m := 0, recv(t, msgs); m != "STATUS=liveness check failing: heart; watchdog not pinged"; i, m = i+1, recv(t, msgs) {
		if m != "WATCHDOG=1" || i == 100 { // a ping every 50ms: 5s
			t.Fatalf("message %q (the %dth since the check failed), want pings until the failure is said", m, i)
		}
	}
	time.Sleep(300 * time.Millisecond) // six pings' worth; under load, maybe fewer
	heart.Report(nil)
	if m := recv(t, msgs); m != "WATCHDOG=1\nSTATUS=live again: watchdog pinged" {
		t.Fatalf("message %q while liveness failed, want none until it recovered", m)
	}
	if m := recv(t, msgs); m != "WATCHDOG=1" {
		t.Fatalf("message %q, want pings again", m)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdNotifyUnreachable checks that a NOTIFY_SOCKET no one listens
// on is logged once, and changes nothing else: the server serves and
// shuts down cleanly.
func TestSystemdNotifyUnreachable(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody.sock"))
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	}, kit.WithLogger(logger))
	if _, err := newPingClient(srv, srv.HTTP1Client()).Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "systemd notify: cannot send"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestSystemdNotifyOff checks that KIT_SYSTEMD_NOTIFY=false sends nothing.
func TestSystemdNotifyOff(t *testing.T) {
	msgs := notifySocket(t, false)
	t.Setenv("KIT_SYSTEMD_NOTIFY", "false")
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	srv := kittest.NewServer(t, cfg, nil)
	if _, err := srv.HTTP1Client().Get(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Sent synchronously by the shutdown, STOPPING=1 would be queued.
	select {
	case m := <-msgs:
		t.Fatalf("sent %q with KIT_SYSTEMD_NOTIFY=false", m)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestSystemdNotifyQueueFull runs servers whose NOTIFY_SOCKET's queue is
// full (a supervisor that stopped reading it): a send gives up after a
// while, READY=1 is sent again once the socket is read, and neither the
// shutdown nor the watchdog waits on the socket for good.
func TestSystemdNotifyQueueFull(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		sock, fill := fullNotifySocket(t)
		fill()
		var logs syncBuffer
		srv := kittest.NewServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		// Without a watchdog, READY=1 is the only message: its send failed.
		awaitLog(t, &logs, "systemd notify: cannot send", sock)
		buf := make([]byte, 4096)
		for i := 0; ; i++ {
			if err := sock.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			n, err := sock.Read(buf)
			if err != nil {
				t.Fatalf("READY=1 not sent again once the socket was read (%d messages read): %v", i, err)
			}
			if strings.HasPrefix(string(buf[:n]), "READY=1\n") {
				break
			}
		}
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		sock, fill := fullNotifySocket(t)
		t.Setenv("WATCHDOG_USEC", "100000") // a ping every 50ms
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
		var logs syncBuffer
		srv := kittest.NewServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		fill() // the watchdog's next ping, and STOPPING=1, find it full
		stopped := make(chan error, 1)
		go func() { stopped <- srv.Stop() }()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			sock.Close() // the sends fail, so that the test ends
			<-stopped
			t.Fatal("the shutdown still waited on the notify socket after a minute")
		}
		if !strings.Contains(logs.String(), "systemd notify: cannot send") {
			t.Errorf("the sends that gave up were not logged:\n%s", logs.String())
		}
		for deadline := time.Now().Add(time.Minute); notifierGoroutines() != ""; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				sock.Close()
				t.Fatalf("the notifier's goroutines still run a minute after the shutdown:\n%s", notifierGoroutines())
			}
		}
	})
}

// fullNotifySocket listens on a unixgram socket that it sets as
// NOTIFY_SOCKET and does not read; fill fills its queue
// (net.unix.max_dgram_qlen datagrams), until a send would wait.
func fullNotifySocket(t *testing.T) (sock *net.UnixConn, fill func()) {
	t.Helper()
	addr := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "notify.sock"), Net: "unixgram"}
	sock, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	t.Setenv("NOTIFY_SOCKET", addr.Name)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	filler, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return sock, func() {
		for {
			if err := filler.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if _, err := filler.Write([]byte("filler")); errors.Is(err, os.ErrDeadlineExceeded) {
				return
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// awaitLog waits for logs to hold line, for up to a minute; then it fails
// the test, closing sock so that the sends waiting on it end.
func awaitLog(t *testing.T, logs *syncBuffer, line string, sock *net.UnixConn) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String(), line); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			sock.Close()
			t.Fatalf("not logged within a minute: %q\n%s", line, logs.String())
		}
	}
}

// notifierGoroutines returns the stacks of the goroutines that run the
// systemd notifier's code, empty when there are none.
func notifierGoroutines() string {
	var all strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&all, 2)
	var found []string
	for _, g := range strings.Split(all.String(), "\n\n") {
		if strings.Contains(g, "kit.(*notifier)") {
			found = append(found, g)
		}
	}
	return strings.Join(found, "\n\n")
}

// TestSystemdExtendTimeoutOverflow checks that the longest shutdown
// timeout Config takes (1h: a longer one, such as a "forever" of 200
// years that overflowed when counted twice, is refused since 8b003ee)
// extends systemd's timeout by a count of µs that covers the whole
// shutdown's bound, not by a negative number, which systemd refuses.
func TestSystemdExtendTimeoutOverflow(t *testing.T) {
	msgs := notifySocket(t, false)
	const longest = time.Hour
	srv := kittest.NewServer(t, kit.Config{ShutdownTimeout: longest, DrainDelay: time.Millisecond}, nil)
	if m := recv(t, msgs); !strings.HasPrefix(m, "READY=1\n") {
		t.Fatalf("message %q, want READY=1", m)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for m := recv(t, msgs); m != "STATUS=shutdown complete"; m = recv(t, msgs) {
		for _, line := range strings.Split(m, "\n") {
			if v, ok := strings.CutPrefix(line, "EXTEND_TIMEOUT_USEC="); ok {
				usec, err := strconv.ParseUint(v, 10, 64)
				if err != nil || strings.HasPrefix(m, "STOPPING=1\n") && usec < uint64(2*longest/time.Microsecond) {
					t.Errorf("message %q: EXTEND_TIMEOUT_USEC not a count of µs (of the whole shutdown's bound, for STOPPING=1)", m)
				}
			}
		}
	}
}

// TestSystemdNotifyUnset checks that without NOTIFY_SOCKET no goroutine
// of the notifier runs, while one does for a server told to notify.
func TestSystemdNotifyUnset(t *testing.T) {
	notifySocket(t, false)
	t.Setenv("WATCHDOG_USEC", "10000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	told := kittest.NewServer(t, kit.Config{}, nil)
	for deadline := time.Now().Add(time.Minute); notifierGoroutines() == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no goroutine of the notifier runs for a server with a watchdog")
		}
	}
	if err := told.Stop(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); notifierGoroutines() != ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the notifier's goroutines still run a minute after the shutdown:\n%s", notifierGoroutines())
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	srv := kittest.NewServer(t, kit.Config{}, nil)
	if _, err := srv.HTTP1Client().Get(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	if g := notifierGoroutines(); g != "" {
		t.Errorf("without NOTIFY_SOCKET, goroutines of the notifier run:\n%s", g)
	}
}
