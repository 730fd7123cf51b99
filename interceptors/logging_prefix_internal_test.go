package interceptors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// TestLinesSayTheSameWithOrWithoutPrefixes checks that a line formatted
// with pre-formatted shared attributes says what a line that carries them
// itself says: past the procedure cap, for a protocol outside the known
// ones, in a logger's group, and on the client side.
func TestLinesSayTheSameWithOrWithoutPrefixes(t *testing.T) {
	t.Parallel()
	for _, group := range []string{"", "rpc"} {
		t.Run("group="+group, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&out, nil))
			if group != "" {
				logger = logger.WithGroup(group)
			}
			l := Logging(logger).(*logging)
			ctx := context.WithValue(context.Background(), httpVersionKey{}, httpVersion(20))
			line := func(procedure, protocol string, client bool) map[string]any {
				t.Helper()
				out.Reset()
				l.logCall(ctx, callLine{
					spec:  connect.Spec{Procedure: procedure, StreamType: connect.StreamTypeServer, IsClient: client},
					peer:  connect.Peer{Protocol: protocol, Addr: "127.0.0.1:1234"},
					start: time.Now(), stream: true, sent: 2, received: 1,
				})
				var m map[string]any
				if err := json.Unmarshal(out.Bytes(), &m); err != nil {
					t.Fatalf("line %q: %v", out.String(), err)
				}
				delete(m, "time")
				if group != "" {
					g, _ := m[group].(map[string]any)
					delete(g, "duration")
				} else {
					delete(m, "duration")
				}
				return m
			}
			for i := range maxPrefixedProcedures {
				line(fmt.Sprintf("/test.v1.S/M%d", i), connect.ProtocolGRPC, false)
			}
			prefixed := line("/test.v1.S/M0", connect.ProtocolGRPC, false)
			if _, shared := l.prefixes.handler(connect.Spec{Procedure: "/test.v1.S/Past"}, connect.ProtocolGRPC, 20); shared {
				t.Fatal("a procedure past the cap got a prefix")
			}
			past := line("/test.v1.S/Past", connect.ProtocolGRPC, false)
			want := strings.ReplaceAll(fmt.Sprint(prefixed), "M0", "Past")
			if got := fmt.Sprint(past); got != want {
				t.Errorf("past the cap:\n got %s\nwant %s", got, want)
			}
			other := line("/test.v1.S/M1", "h3-custom", false)
			attrs := other
			if group != "" {
				attrs = other[group].(map[string]any)
			}
			if attrs["protocol"] != "h3-custom" || attrs["http"] != "HTTP/2.0" || attrs["kind"] != "server" {
				t.Errorf("unknown protocol: %v", other)
			}
			client := line("/test.v1.S/M1", connect.ProtocolGRPC, true)
			if group != "" {
				client = client[group].(map[string]any)
			}
			if client["kind"] != "client" || client["http"] != nil || client["stream"] != "server_stream" {
				t.Errorf("client line: %v", client)
			}
			// Both sides of a procedure, on one protocol, without an HTTP
			// version: each line has its own side's prefix.
			ctx = context.Background()
			for _, want := range []string{"server", "client", "server"} {
				m := line("/test.v1.S/M2", connect.ProtocolGRPC, want == "client")
				if group != "" {
					m = m[group].(map[string]any)
				}
				if m["kind"] != want {
					t.Errorf("%s line of a procedure whose other side logged: %v", want, m)
				}
			}
		})
	}
}
