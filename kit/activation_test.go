package kit_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
)

// TestSocketActivation runs Listen in a child process (this test binary,
// again) given sockets as systemd passes them (fd 3 on, LISTEN_FDS,
// LISTEN_FDNAMES, and LISTEN_PID set by a shell to the PID it then execs),
// and checks which listener each becomes, and that what cannot be served
// is refused at start, saying why. The child prints Listen's error, or the
// addresses it serves on.
func TestSocketActivation(t *testing.T) {
	if os.Getenv("KIT_TEST_ACTIVATION") == "1" {
		cfg, err := kit.ConfigFromEnv()
		if err == nil {
			var srv *kit.Server
			if srv, err = kit.New(cfg); err == nil {
				if err = srv.Listen(); err == nil {
					os.Stdout.WriteString("main=" + srv.Addr().String() + " admin=" + srv.AdminAddr().String() + "\n")
					_ = srv.Close(context.Background())
					return
				}
			}
		}
		os.Stdout.WriteString("error: " + err.Error() + openFDs() + "\n")
		return
	}
	t.Parallel()
	listen := func(t *testing.T, addr string) (*os.File, string) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f, ln.Addr().String()
	}
	notSocket := func(t *testing.T, _ string) (*os.File, string) {
		f, err := os.Create(filepath.Join(t.TempDir(), "file"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f, f.Name()
	}
	type socket struct {
		open func(*testing.T, string) (*os.File, string)
		addr string // to listen on
		name string // its LISTEN_FDNAMES entry
	}
	for _, tc := range []struct {
		name    string
		sockets []socket
		env     []string
		want    string // the line, or its start if an error or ending in ":"; {0}, {1}: the sockets' addresses
	}{
		{"one: main", []socket{{listen, "127.0.0.1:0", "profiles.socket"}}, nil, "main={0} admin=127.0.0.1:"},
		{"two, by order", []socket{{listen, "127.0.0.1:0", ""}, {listen, "127.0.0.1:0", ""}}, nil, "main={0} admin={1}"},
		{"two, by name", []socket{{listen, "127.0.0.1:0", "admin"}, {listen, "127.0.0.1:0", "main"}}, nil, "main={1} admin={0}"},
		{"three", []socket{{listen, "127.0.0.1:0", ""}, {listen, "127.0.0.1:0", ""}, {listen, "127.0.0.1:0", ""}}, nil,
			"error: kit: socket activation: 3 sockets passed (LISTEN_FDS), want at most 2"},
		{"admin beyond loopback", []socket{{listen, "127.0.0.1:0", "main"}, {listen, ":0", "admin"}}, nil,
			"error: kit: socket activation: admin socket [::]:"},
		{"admin beyond loopback, token", []socket{{listen, "127.0.0.1:0", "main"}, {listen, ":0", "admin"}}, []string{"KIT_ADMIN_TOKEN=secret"}, "main={0} admin={1}"},
		{"admin with the admin listener off", []socket{{listen, "127.0.0.1:0", "main"}, {listen, "127.0.0.1:0", "admin"}}, []string{"KIT_ADMIN_ADDR=off"},
			"error: kit: socket activation: an admin socket was passed, and KIT_ADMIN_ADDR is off"},
		{"not a socket", []socket{{notSocket, "", ""}}, nil, "error: kit: socket activation: fd 3 ("},
		{"not a socket, then one", []socket{{notSocket, "", ""}, {listen, "127.0.0.1:0", ""}}, nil, "error: kit: socket activation: fd 3 ("},
		// One .socket unit's sockets share its name: two ListenStream= of
		// FileDescriptorName=main are not a main and an admin listener.
		{"two named main", []socket{{listen, "127.0.0.1:0", "main"}, {listen, "127.0.0.1:0", "main"}}, nil,
			`error: kit: socket activation: fds 3 and 4 are both named "main"`},
		{"two named admin", []socket{{listen, "127.0.0.1:0", "admin"}, {listen, "127.0.0.1:0", "admin"}}, nil,
			`error: kit: socket activation: fds 3 and 4 are both named "admin"`},
		{"two of one unit", []socket{{listen, "127.0.0.1:0", "profiles.socket"}, {listen, "127.0.0.1:0", "profiles.socket"}}, nil,
			`error: kit: socket activation: fds 3 and 4 are both named "profiles.socket"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var files []*os.File
			var names []string
			want := tc.want
			for i, s := range tc.sockets {
				f, addr := s.open(t, s.addr)
				files = append(files, f)
				names = append(names, s.name)
				want = strings.ReplaceAll(want, "{"+strconv.Itoa(i)+"}", addr)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run=^TestSocketActivation$")
			cmd.ExtraFiles = files
			cmd.Env = append(append(os.Environ(), "KIT_TEST_ACTIVATION=1", "KIT_TEST_FDS="+strconv.Itoa(len(files)), "KIT_ADDR=127.0.0.1:0", "KIT_ADMIN_ADDR=127.0.0.1:0", "KIT_LOG_LEVEL=error",
				"LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":")), tc.env...)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			line, _, _ := strings.Cut(string(out), "\n")
			if strings.Contains(line, "still open") {
				t.Fatalf("child printed %q: a socket passed is left open after the error", line)
			}
			if line != want && !(strings.HasSuffix(want, ":") || strings.HasPrefix(want, "error:")) || !strings.HasPrefix(line, want) {
				t.Fatalf("child printed %q, want %q", line, want)
			}
		})
	}
}

// openFDs returns, in the child of TestSocketActivation, " (fd N still
// open)" for each of the fds passed (KIT_TEST_FDS of them from fd 3) that
// is still open.
func openFDs() string {
	n, _ := strconv.Atoi(os.Getenv("KIT_TEST_FDS"))
	var open string
	for fd := 3; fd < 3+n; fd++ {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) == nil {
			open += " (fd " + strconv.Itoa(fd) + " still open)"
		}
	}
	return open
}
