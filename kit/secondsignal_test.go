//go:build unix

package kit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
)

// signalChild is the variable under which the tests below run their own
// binary as a server with a 30s drain delay.
const signalChild = "KIT_TEST_SIGNAL_CHILD"

// signalledServer is a child process serving with a drain delay, and its
// log lines.
type signalledServer struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser // a line on it ends the drain of startDrainingServer's child
	lines chan string
	logs  []string
}

// startSignalledServer runs the test's own binary again as the server
// and waits until it serves. In that child it serves instead, until a
// signal ends it, and reports false. With notifies, the child's Run gets
// a context of signal.NotifyContext, as a func main often passes it, so
// that the program listens to the signals too.
func startSignalledServer(t *testing.T, notifies bool) (*signalledServer, bool) {
	t.Helper()
	if os.Getenv(signalChild) != "" {
		srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff, LogFormat: "json", LogLevel: slog.LevelDebug, DrainDelay: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if notifies {
			var stop context.CancelFunc
			ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
		}
		if err := srv.Run(ctx); err != nil {
			t.Fatalf("Run: %v", err)
		}
		return nil, false
	}
	return spawnSignalledChild(t), true
}

// spawnSignalledChild runs the test's own binary again, with signalChild
// set, and waits until it serves.
func spawnSignalledChild(t *testing.T) *signalledServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), signalChild+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &signalledServer{t: t, cmd: cmd, stdin: stdin, lines: make(chan string)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	s.waitFor("serving")
	return s
}

// waitFor reads the child's lines up to one whose message starts with msg.
func (s *signalledServer) waitFor(msg string) {
	s.t.Helper()
	for line := range s.lines {
		s.logs = append(s.logs, line)
		if strings.Contains(line, `"msg":"`+msg) {
			return
		}
	}
	s.t.Fatalf("the child ended without logging %q; its output:\n%s", msg, s.output())
}

// signal sends the child SIGTERM.
func (s *signalledServer) signal() {
	s.t.Helper()
	s.send(syscall.SIGTERM)
}

// send sends the child sig.
func (s *signalledServer) send(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// wait reads the child's lines to the end and returns how it exited.
func (s *signalledServer) wait() error {
	for line := range s.lines {
		s.logs = append(s.logs, line)
	}
	return s.cmd.Wait()
}

func (s *signalledServer) output() string { return strings.Join(s.logs, "\n") }

// wantKilledBy reads the child's lines to the end and checks that sig
// ended it.
func (s *signalledServer) wantKilledBy(sig syscall.Signal) {
	s.t.Helper()
	err := s.wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		s.t.Fatalf("the child's exit: %v, want killed by %v; its output:\n%s", err, sig, s.output())
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != sig {
		s.t.Errorf("the child's exit: %v, want killed by %v; its output:\n%s", err, sig, s.output())
	}
}

// A second SIGTERM during the shutdown (here, in a 30s drain delay) ends
// the process at once, killed by SIGTERM as without kit, but logs why
// first: before, the logs of such a process stopped at "draining", with
// nothing to tell a second signal from a crash. So too when func main
// listens to the signals itself and passes Run the context of its
// signal.NotifyContext, a common main: the signal that kit raises again
// would go to main's channel, whose context is done already, and be
// lost, after kit logged that it exits.
func TestSecondSignalLogsAndExitsAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		notifies bool
	}{{"kit_alone", false}, {"main_listens_too", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, parent := startSignalledServer(t, tc.notifies)
			if !parent {
				return
			}
			s.signal()
			s.waitFor("draining")
			time.Sleep(1500 * time.Millisecond) // past the grace of a signal delivered twice
			start := time.Now()
			s.signal()
			s.wantKilledBy(syscall.SIGTERM)
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("the child took %v to exit after the second signal, within its 30s drain delay: not at once", took)
			}
			if !strings.Contains(s.output(), `"level":"ERROR","msg":"second signal received: exiting at once, without finishing the shutdown","signal":"terminated"`) {
				t.Errorf("no error line for the second signal; the child's output:\n%s", s.output())
			}
		})
	}
}

// The same signal delivered twice at once, as GNU timeout does (to its
// command, then to the command's process group), is one request to shut
// down, not a second signal: the shutdown goes on, here through the drain
// delay. The duplicate goes once the child logs "draining", so after Run
// listens for a second signal; the child must log that it ignored it and
// still be draining past the grace. The grace runs from when the child
// takes the first signal, so a machine that stalls the child for a second
// can take a faithful kit's duplicate for a second signal: a round where
// the duplicate was seen a second or more after the first signal was sent
// proves nothing and is run again; sooner, it is a failure.
func TestSignalDeliveredTwiceIsOneShutdown(t *testing.T) {
	t.Parallel()
	const rounds = 3
	for round := 1; round <= rounds; round++ {
		if !duplicateIgnored(t) {
			continue
		}
		return
	}
	t.Skipf("in each of %d rounds the machine stalled the child past the grace of a signal delivered twice", rounds)
}

// secondSignalGrace is kit's grace for a SIGTERM delivered twice.
const secondSignalGrace = time.Second

// duplicateIgnored runs one round of TestSignalDeliveredTwiceIsOneShutdown
// and reports false if it proved nothing: the duplicate was taken for a
// second signal, but too late to tell a fault from a stalled machine.
func duplicateIgnored(t *testing.T) bool {
	s, parent := startSignalledServer(t, false)
	if !parent {
		return true
	}
	defer func() { // the child drains for 30s: end it
		_ = s.cmd.Process.Kill()
		_ = s.wait()
	}()
	start := time.Now()
	s.signal()
	s.waitFor("draining") // logged once Run listens for a second signal
	s.signal()            // the duplicate
	for ignored := false; !ignored; {
		line, ok := <-s.lines
		if !ok {
			t.Fatalf("the child ended after a signal delivered twice: %v; its output:\n%s", s.cmd.Wait(), s.output())
		}
		s.logs = append(s.logs, line)
		ignored = strings.Contains(line, `"msg":"signal ignored`)
		if strings.Contains(line, "second signal received") {
			// The child took the duplicate after its shutdown began, which
			// was after start, and before now.
			if took := time.Since(start); took >= secondSignalGrace {
				t.Logf("the duplicate was taken for a second signal, seen %v after the first was sent: the machine stalled past the grace; running the round again", took)
				return false
			}
			t.Fatalf("a signal delivered twice was taken for a second one; the child's output:\n%s", s.output())
		}
	}
	// Past the grace, the child is still draining: it ignored the duplicate
	// and did not exit.
	past := time.After(time.Until(start.Add(secondSignalGrace + 500*time.Millisecond)))
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("the child ended after a signal delivered twice: %v; its output:\n%s", s.cmd.Wait(), s.output())
			}
			s.logs = append(s.logs, line)
		case <-past:
			return true
		}
	}
}

// A second ^C ends the process at once even within the grace that a
// SIGTERM delivered twice gets: a terminal sends SIGINT once a key press,
// so a second one is a developer's ^C^C, who wants the process gone now.
func TestSecondInterruptExitsAtOnceWithinTheGrace(t *testing.T) {
	t.Parallel()
	s, parent := startSignalledServer(t, false)
	if !parent {
		return
	}
	s.send(os.Interrupt)
	s.waitFor("draining") // logged once Run listens for a second signal
	s.send(os.Interrupt)
	s.wantKilledBy(syscall.SIGINT)
	if !strings.Contains(s.output(), `"msg":"second signal received: exiting at once, without finishing the shutdown","signal":"interrupt"`) {
		t.Errorf("no error line for the second ^C; the child's output:\n%s", s.output())
	}
}

// startDrainingServer is startSignalledServer for a shutdown that no
// signal began: in the child, a background component fails (how is
// "failure") or func main cancels Run's context ("cancel"), and another
// component, once cancelled, drains until a line comes on its stdin, as a
// subscriber finishes the messages it holds.
func startDrainingServer(t *testing.T, how string) (*signalledServer, bool) {
	t.Helper()
	if os.Getenv(signalChild) == "" {
		return spawnSignalledChild(t), true
	}
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff, LogFormat: "json", LogLevel: slog.LevelDebug})
	if err != nil {
		t.Fatal(err)
	}
	srv.Go(func(ctx context.Context) error {
		<-ctx.Done()
		srv.Logger().Info("component draining")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		srv.Logger().Info("component drained")
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failed := errors.New("component failed")
	srv.Go(func(context.Context) error {
		if how == "failure" {
			return failed
		}
		cancel()
		return nil
	})
	var want error // Run's error: that of the failed component, if one did
	if how == "failure" {
		want = failed
	}
	if err := srv.Run(ctx); !errors.Is(err, want) {
		t.Fatalf("Run: %v, want %v", err, want)
	}
	return nil, false
}

// A first signal during a shutdown that a failed component or a cancelled
// context began asks for what is under way: the child logs so and goes on
// draining, to a clean exit, where it used to take that signal for a
// second one, a second after the shutdown began, and exit at once: a
// Kubernetes pod deleted once its component failed dropped the calls the
// drain was there for. A signal after that one is a second signal and ends
// the child at once. Each signal goes past the grace a SIGTERM delivered
// twice gets (from the shutdown's start before, from the first signal now).
func TestFirstSignalDuringShutdownStartedOtherwise(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"failure", "cancel"} {
		for _, signals := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s_%d_signals", how, signals), func(t *testing.T) {
				t.Parallel()
				s, parent := startDrainingServer(t, how)
				if !parent {
					return
				}
				s.waitFor("component draining")
				time.Sleep(1500 * time.Millisecond) // past the grace from the shutdown's start
				s.signal()
				s.waitFor("signal received during shutdown; already draining")
				if signals == 1 {
					if _, err := io.WriteString(s.stdin, "drained\n"); err != nil {
						t.Fatal(err)
					}
					if err := s.wait(); err != nil {
						t.Fatalf("the child's exit: %v, want a clean one after its drain; its output:\n%s", err, s.output())
					}
					if !strings.Contains(s.output(), `"msg":"component drained"`) {
						t.Errorf("the child exited without finishing its drain; its output:\n%s", s.output())
					}
					return
				}
				time.Sleep(1500 * time.Millisecond) // past the grace of a signal delivered twice
				s.signal()
				s.wantKilledBy(syscall.SIGTERM)
				if strings.Contains(s.output(), `"msg":"component drained"`) {
					t.Errorf("the child finished its drain after a second signal; its output:\n%s", s.output())
				}
				if !strings.Contains(s.output(), `"level":"ERROR","msg":"second signal received: exiting at once, without finishing the shutdown","signal":"terminated"`) {
					t.Errorf("no error line for the second signal; the child's output:\n%s", s.output())
				}
			})
		}
	}
}
