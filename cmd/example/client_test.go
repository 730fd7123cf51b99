package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	if err := runList(t.Context(), args, &out); err != nil {
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
	err := runList(t.Context(), []string{"-pprof", "false", "-target", srv.URL}, &out)
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "false"`) {
		t.Errorf("example list -pprof false -target ... = %v, want the argument refused", err)
	}

	// -help prints the usage and succeeds, as the server's -help exits 0;
	// it failed with "flag: help requested" (exit 1).
	out.Reset()
	if err := runList(t.Context(), []string{"-help"}, &out); err != nil || out.Len() != 0 {
		t.Errorf("example list -help = %v, printing %q on stdout; want nil and nothing listed", err, out.String())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close() // a port where nothing listens: connections refused
	out.Reset()
	err = runList(t.Context(), []string{"-target", closed, "-client-retry", "on"}, &out)
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), closed) || out.Len() != 0 {
		t.Errorf("example list of %s = %v, printed %q; want unavailable naming it, nothing printed", closed, err, out.String())
	}
}
