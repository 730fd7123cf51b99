package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestFailedStartIsALogLine runs the example's main in a process of its
// own (this test binary, again) that fails to start, and checks that it
// says why on stderr in the configured log format, as every other line of
// the server's, at error, and exits 1: a plain-text "example: …" line was
// dropped by a log pipeline that reads JSON.
func TestFailedStartIsALogLine(t *testing.T) {
	if os.Getenv("EXAMPLE_TEST_MAIN") == "1" {
		os.Args = os.Args[:1] // no flags of the example's
		main()
		t.Fatal("main returned: the example started")
	}
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() }) // after the parallel subtests
	inUse := func() []string {          // each its own store: two embedded servers may not share one
		return []string{"KIT_ADDR=" + taken.Addr().String(), "KIT_ADMIN_ADDR=127.0.0.1:0", "NATS_DATA_DIR=" + t.TempDir()}
	}
	for _, tc := range []struct {
		name string
		env  []string
		text bool   // KIT_LOG_FORMAT=text: a line for a person
		want string // in the line's error
	}{
		{"invalid configuration", []string{"KIT_ADDR=bad"}, false, `Addr (KIT_ADDR) "bad"`},
		{"invalid log format", []string{"KIT_LOG_FORMAT=xml"}, false, `(KIT_LOG_FORMAT) "xml"`},
		{"address in use", inUse(), false, "address already in use"},
		{"address in use, text", append([]string{"KIT_LOG_FORMAT=text"}, inUse()...), true, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A child that started after all is killed, not waited for.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFailedStartIsALogLine$")
			cmd.Env = append(append(os.Environ(), "EXAMPLE_TEST_MAIN=1"), tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if exit := (*exec.ExitError)(nil); !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("the example exited with %v, want exit status 1; stderr:\n%s", err, &stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			last := lines[len(lines)-1]
			if tc.text {
				if strings.HasPrefix(last, "{") || !strings.Contains(last, "ERR") || !strings.Contains(last, "example: exiting") || !strings.Contains(last, tc.want) {
					t.Fatalf("last line %q, want a text line at error naming %q; stderr:\n%s", last, tc.want, &stderr)
				}
				return
			}
			for _, l := range lines {
				if !json.Valid([]byte(l)) {
					t.Errorf("stderr holds a line that is not JSON: %q", l)
				}
			}
			var line struct{ Level, Msg, Error string }
			if err := json.Unmarshal([]byte(last), &line); err != nil || line.Level != "ERROR" || line.Msg != "example: exiting" || !strings.Contains(line.Error, tc.want) {
				t.Fatalf("last line %q, want a JSON line at error whose error names %q; stderr:\n%s", last, tc.want, &stderr)
			}
		})
	}
}
