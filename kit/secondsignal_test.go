//go:build unix

package kit_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
)

// secondSignalChild is the variable under which
// TestSecondSignalLogsAndExitsAtOnce runs its own binary as the server.
const secondSignalChild = "KIT_TEST_SECOND_SIGNAL_CHILD"

// A second SIGTERM during the shutdown (here, in a 30s drain delay) ends
// the process at once, killed by SIGTERM as without kit, but logs why
// first: before, the logs of such a process stopped at "draining", with
// nothing to tell a second signal from a crash.
func TestSecondSignalLogsAndExitsAtOnce(t *testing.T) {
	t.Parallel()
	if os.Getenv(secondSignalChild) != "" {
		srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff, LogFormat: "json", DrainDelay: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Fatalf("Run returned %v, where the second signal should have ended the process", srv.Run(context.Background()))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), secondSignalChild+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var logs []string
	waitFor := func(msg string) {
		t.Helper()
		for line := range lines {
			logs = append(logs, line)
			if strings.Contains(line, `"msg":"`+msg) {
				return
			}
		}
		t.Fatalf("the child ended without logging %q; its output:\n%s", msg, strings.Join(logs, "\n"))
	}
	waitFor("serving")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("draining")
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		logs = append(logs, line)
	}
	err = cmd.Wait()
	took := time.Since(start)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the child's exit: %v, want killed by SIGTERM", err)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("the child's exit: %v, want killed by SIGTERM", err)
	}
	if took > 20*time.Second {
		t.Errorf("the child took %v to exit after the second signal, within its 30s drain delay: not at once", took)
	}
	out := strings.Join(logs, "\n")
	if !strings.Contains(out, `"level":"ERROR","msg":"second signal received: exiting at once, without finishing the shutdown","signal":"terminated"`) {
		t.Errorf("no error line for the second signal; the child's output:\n%s", out)
	}
}
