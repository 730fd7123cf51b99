package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"connectrpc.com/connect"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/kit"
)

// TestListCommand: `example list` prints every profile of a running
// example, a page after another, through kit's HTTP client and client
// chain, whatever the admin settings it shares with a service, and fails
// naming the target when no example answers there.
func TestListCommand(t *testing.T) {
	t.Parallel()
	srv := newExample(t, kit.Config{})
	client := examplev1connect.NewProfileServiceClient(srv.HTTP1Client(), srv.URL)
	const n = 51 // more than ListProfiles' default page of 50
	for i := range n {
		req := &examplev1.CreateProfileRequest{Name: fmt.Sprintf("Ada %02d", i), Email: "ada@example.com"}
		if _, err := client.CreateProfile(t.Context(), connect.NewRequest(req)); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	// The admin address is a service's, which the command ignores: this
	// one, beyond loopback without a token, would stop kit.New.
	args := []string{"-target", srv.URL, "-client-retry", "on", "-client-breaker", "on", "-admin-addr", "0.0.0.0:9090"}
	if err := runList(t.Context(), args, &out, io.Discard); err != nil {
		t.Fatalf("example list: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	names := map[string]bool{}
	for _, line := range lines {
		var p struct{ ID, Name, Email string }
		if err := json.Unmarshal([]byte(line), &p); err != nil || p.ID == "" {
			t.Fatalf("line %q: not a profile (%v)", line, err)
		}
		names[p.Name] = true
	}
	if len(lines) != n || len(names) != n {
		t.Errorf("example list printed %d lines, %d names; want the %d profiles", len(lines), len(names), n)
	}

	// A boolean flag's value given apart ends the flags: refused, rather
	// than -target after it dropped and localhost:8080 listed.
	err := runList(t.Context(), []string{"-pprof", "false", "-target", srv.URL}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "false"`) {
		t.Errorf("example list -pprof false -target ... = %v, want the argument refused", err)
	}

	// -help prints the usage and succeeds, as the server's -help exits 0;
	// it failed with "flag: help requested" (exit 1).
	out.Reset()
	var stderr bytes.Buffer
	if err := runList(t.Context(), []string{"-help"}, &out, &stderr); err != nil || out.Len() != 0 || !strings.Contains(stderr.String(), "-target") {
		t.Errorf("example list -help = %v, printing %q on stdout, %q on stderr; want nil, nothing listed, the usage", err, out.String(), stderr.String())
	}

	// A flag it does not know is refused once, with the usage, and exits
	// 2, as the server's flags do: main printed flag's error again.
	stderr.Reset()
	err = runList(t.Context(), []string{"-no-such-flag"}, &out, &stderr)
	const refused = "flag provided but not defined: -no-such-flag"
	if code := exitCode(&stderr, err); code != 2 || strings.Count(stderr.String(), refused) != 1 || !strings.Contains(stderr.String(), "-target") {
		t.Errorf("example list -no-such-flag exits %d, printing %q %d times (usage: %t); want 2, once, and the usage",
			code, refused, strings.Count(stderr.String(), refused), strings.Contains(stderr.String(), "-target"))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close() // a port where nothing listens: connections refused
	out.Reset()
	err = runList(t.Context(), []string{"-target", closed, "-client-retry", "on"}, &out, io.Discard)
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), closed) || out.Len() != 0 {
		t.Errorf("example list of %s = %v, printed %q; want unavailable naming it, nothing printed", closed, err, out.String())
	}
}
