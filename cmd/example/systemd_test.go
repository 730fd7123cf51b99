package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify runs the example's main in a process of its own (this
// test binary, again) as systemd runs a unit of Type=notify with
// WatchdogSec and a .socket unit: NOTIFY_SOCKET, WATCHDOG_USEC,
// WATCHDOG_PID and LISTEN_PID (set to the process's own PID by a shell
// that then execs it), and a listening socket as fd 3 (LISTEN_FDS=1,
// LISTEN_FDNAMES=main) whose address KIT_ADDR names too, so that the
// example cannot start unless it serves on the socket passed. It checks
// that the example says READY=1 once it serves (after its broker and
// subscriber checks passed), answers on that socket, pings the watchdog,
// and on SIGTERM says STOPPING=1 and each stage of its shutdown, then
// exits 0.
func TestSystemdNotify(t *testing.T) {
	if os.Getenv("EXAMPLE_TEST_MAIN") == "1" {
		os.Args = os.Args[:1]
		main()
		return
	}
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `WATCHDOG_PID=$$ LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run=^TestSystemdNotify$")
	cmd.ExtraFiles = []*os.File{lnFile} // fd 3
	cmd.Env = append(os.Environ(), "EXAMPLE_TEST_MAIN=1", "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000",
		"LISTEN_FDS=1", "LISTEN_FDNAMES=main", "KIT_ADDR="+ln.Addr().String(), "KIT_ADMIN_ADDR=127.0.0.1:0",
		"KIT_DRAIN_DELAY=100ms", "KIT_LOG_FORMAT=json", "NATS_DATA_DIR="+t.TempDir())
	logs, err := os.Create(filepath.Join(t.TempDir(), "example.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd.Stdout, cmd.Stderr = logs, logs
	logged := func() string { b, _ := os.ReadFile(logs.Name()); return string(b) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	recv := func() string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case err := <-exited:
			t.Fatalf("the example exited (%v) before its message; its logs:\n%s", err, logged())
		case <-ctx.Done():
			t.Fatalf("no message within 2 minutes; the example's logs:\n%s", logged())
		}
		return ""
	}
	m := recv()
	for strings.HasPrefix(m, "STATUS=starting: waiting for readiness checks: ") || m == "WATCHDOG=1" { // the watchdog from the start
		m = recv()
	}
	if want := "READY=1\nSTATUS=serving on " + ln.Addr().String(); m != want {
		t.Fatalf("message %q, want %q: the socket passed", m, want)
	}
	res, err := http.Post("http://"+ln.Addr().String()+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || !strings.Contains(string(body), `"SERVING"`) {
		t.Fatalf("health Check on the socket passed: %v %s", err, body)
	}
	for pings := 0; pings < 2; {
		if m := recv(); m != "WATCHDOG=1" {
			t.Fatalf("message %q, want watchdog pings", m)
		}
		pings++
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"STOPPING=1\nSTATUS=shutting down (terminated signal received): reported NOT_SERVING\n",
		"STATUS=draining: serving 100ms more so that load balancers notice\n",
		"STATUS=stopping: waiting for the calls in flight: 0 (up to 15s)\n",
		"STATUS=stopping background components (up to 15s)\n",
		"STATUS=closing the HTTP client, flushing traces, closing the admin listener\n",
		"STATUS=shutdown complete",
	}
	for _, w := range want {
		m := recv()
		for m == "WATCHDOG=1" { // pinged through the shutdown: liveness holds
			m = recv()
		}
		if !strings.HasPrefix(m, w) || strings.HasSuffix(w, "\n") && !strings.Contains(m, "\nEXTEND_TIMEOUT_USEC=") {
			t.Fatalf("message %q, want %q and its EXTEND_TIMEOUT_USEC", m, w)
		}
	}
	if err := <-exited; err != nil {
		t.Fatalf("the example exited with %v; its logs:\n%s", err, logged())
	}
}

// TestREADMEUnitFile checks the unit files of the README's section
// "systemd", the service and its socket, with systemd-analyze verify,
// which prints a warning for each setting it cannot parse, for an
// ExecStart that is not executable (this test binary stands in for the
// example's) and for a socket without its service.
func TestREADMEUnitFile(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze: ", err)
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "\n### systemd\n")
	section, _, _ = strings.Cut(section, "\n### ")
	dir := t.TempDir()
	var files []string
	for _, name := range []string{"profiles.service", "profiles.socket"} {
		_, unit, _ := strings.Cut(section, "\n```ini\n# /etc/systemd/system/"+name)
		_, unit, _ = strings.Cut(unit, "\n") // the rest of the comment naming it
		unit, _, found := strings.Cut(unit, "\n```\n")
		if !found {
			t.Fatalf("no unit file %s in the README's section systemd", name)
		}
		unit = strings.Replace(unit, "ExecStart=/usr/local/bin/profiles", "ExecStart="+os.Args[0], 1)
		files = append(files, filepath.Join(dir, name))
		if err := os.WriteFile(files[len(files)-1], []byte(unit+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if service, _ := os.ReadFile(files[0]); !strings.Contains(string(service), "\nType=notify\n") || !strings.Contains(string(service), "\nWatchdogSec=") {
		t.Fatalf("the README's service is not of Type=notify with WatchdogSec:\n%s", service)
	}
	out, err := exec.CommandContext(t.Context(), analyze, append([]string{"verify"}, files...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
