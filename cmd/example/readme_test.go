package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
)

var update = flag.Bool("update", false, "rewrite the command outputs shown in README.md with what the commands print")

const readmePath = "../../README.md"

// session is one command of a README console block and the output shown
// under it, as lines of the README (from, to) that hold that output.
type session struct {
	command  string
	output   string
	from, to int // README lines [from, to) of the output
}

// readmeSessions returns the commands of README.md's console blocks, in
// order: together they are one session against `go run ./cmd/example`.
func readmeSessions(tb testing.TB, lines []string) []session {
	tb.Helper()
	var out []session
	inBlock := false
	for i, line := range lines {
		switch {
		case strings.HasPrefix(line, "```console"):
			inBlock = true
		case inBlock && strings.HasPrefix(line, "```"):
			inBlock = false
		case inBlock && strings.HasPrefix(line, "$ "):
			out = append(out, session{command: strings.TrimPrefix(line, "$ "), from: i + 1, to: i + 1})
		case inBlock && len(out) > 0:
			s := &out[len(out)-1]
			s.output += line + "\n"
			s.to = i + 1
		}
	}
	return out
}

var (
	uuidRE  = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	timeRE  = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z`)
	spaceRE = regexp.MustCompile(`([,:]) `)
	durRE   = regexp.MustCompile(`"duration":"[^"]*"`)
)

// downloadRE matches what the go command prints while it fetches modules.
var downloadRE = regexp.MustCompile(`(?m)^go: downloading .*\n`)

// normalize replaces what differs from run to run: ids, timestamps,
// durations, and the spaces protojson adds at random after commas and colons
// (on purpose, so that nobody relies on its exact output).
func normalize(s string) string {
	s = uuidRE.ReplaceAllString(s, "<uuid>")
	s = timeRE.ReplaceAllString(s, "<time>")
	s = durRE.ReplaceAllString(s, `"duration":"<duration>"`)
	return spaceRE.ReplaceAllString(s, "$1")
}

// TestREADMESessions runs every command the README shows, verbatim but for
// the ports, in order against the example, and checks that each prints what
// the README says it prints (ids and timestamps aside). With -update it
// rewrites the README's outputs instead.
func TestREADMESessions(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	sessions := readmeSessions(t, lines)
	if len(sessions) < 5 {
		t.Fatalf("found %d commands in README.md", len(sessions))
	}
	srv := newExample(t, kit.Config{AdminAddr: "127.0.0.1:0"})
	// The section "Authentication" calls a second example, at
	// localhost:8081, with EXAMPLE_API_TOKENS='s3cr3t=alice'.
	tokens, err := parseAPITokens("s3cr3t=alice")
	if err != nil {
		t.Fatal(err)
	}
	authSrv := newExample(t, kit.Config{}, kit.WithAuth(tokens.authenticate))
	ports := strings.NewReplacer(
		"localhost:8080", srv.Addr().String(),
		"localhost:8081", authSrv.Addr().String(),
		"localhost:9090", srv.AdminAddr().String(),
	)
	for i := range sessions {
		s := &sessions[i]
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // the first go tool run builds the tool
		cmd := exec.CommandContext(ctx, "bash", "-c", ports.Replace(s.command))
		cmd.Dir = "../.." // the repository root, where the README's commands run
		// A command that leaves a process holding its output (a server
		// started in a session, which must not be) fails the test after
		// its timeout rather than hanging it.
		cmd.WaitDelay = 10 * time.Second
		got, _ := cmd.CombinedOutput()
		cancel()
		// On a machine that has not built the tool yet, go tool also says
		// what it downloads; the README shows a warm machine's output.
		got = downloadRE.ReplaceAll(got, nil)
		gotText := strings.NewReplacer(srv.Addr().String(), "localhost:8080", authSrv.Addr().String(), "localhost:8081",
			srv.AdminAddr().String(), "localhost:9090").Replace(string(got))
		if !strings.HasSuffix(gotText, "\n") {
			gotText += "\n"
		}
		if *update {
			s.output = gotText
			continue
		}
		if normalize(gotText) != normalize(s.output) {
			t.Errorf("README.md:%d: $ %s\nprinted:\n%s\nREADME shows:\n%s", s.from, s.command, gotText, s.output)
		}
	}
	if *update {
		var out []string
		last := 0
		for _, s := range sessions {
			out = append(out, lines[last:s.from]...)
			out = append(out, strings.Split(strings.TrimSuffix(s.output, "\n"), "\n")...)
			last = s.to
		}
		out = append(out, lines[last:]...)
		if err := os.WriteFile(readmePath, []byte(strings.Join(out, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestREADMEProtovalidateVersion: the README's setup for a project of its
// reader's own copies validate.proto at the version whose Go types kit
// links, the Makefile's PROTOVALIDATE_VERSION.
func TestREADMEProtovalidateVersion(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^PROTOVALIDATE_VERSION := (\S+)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("no PROTOVALIDATE_VERSION in the Makefile")
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/bufbuild/protovalidate@" + string(m[1])
	if !strings.Contains(string(readme), want) {
		t.Errorf("README does not copy validate.proto from %s, the Makefile's version", want)
	}
}

// TestREADMEOpenAPIVersions: the README pins protoc-gen-openapiv2 at the
// version tools/go.mod runs, and Redocly CLI at the Makefile's.
func TestREADMEOpenAPIVersions(t *testing.T) {
	t.Parallel()
	read := func(name string) string {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	readme := read(readmePath)
	for _, c := range []struct{ file, re, want string }{
		{"../../tools/go.mod", `(?m)^\s*github.com/grpc-ecosystem/grpc-gateway/v2 (\S+)`, "protoc-gen-openapiv2@%s"},
		{"../../Makefile", `(?m)^REDOCLY_CLI := (\S+)$`, "npx %s "},
	} {
		m := regexp.MustCompile(c.re).FindStringSubmatch(read(c.file))
		if m == nil {
			t.Fatalf("%s: nothing matches %s", c.file, c.re)
		}
		if want := fmt.Sprintf(c.want, m[1]); !strings.Contains(readme, want) {
			t.Errorf("README does not say %q, the version in %s", want, c.file)
		}
	}
}
