package kit_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// waitPing is a PingService whose Ping answers when its context ends,
// with the context's error: DeadlineExceeded when its deadline passes.
type waitPing struct{ pingServer }

func (*waitPing) Ping(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// relayPing is a PingService whose Ping calls the downstream's Ping with
// its context, the caller's deadline propagated; with the text "own", under
// a deadline of its own of 50ms.
type relayPing struct {
	pingServer
	downstream pingv1connect.PingServiceClient
}

func (p *relayPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if req.Msg.GetText() == "own" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
	}
	return p.downstream.Ping(ctx, connect.NewRequest(req.Msg))
}

// A call that fails DeadlineExceeded logs at warn when the deadline that
// passed is the caller's (the handler's downstream call ran out of the
// budget the caller set), as go-grpc-middleware's DefaultServerCodeToLevel
// logs it, where it logged at error; at error still when the deadline is
// the server's: KIT_CALL_TIMEOUT's for a caller that set none, or a
// handler's own, shorter than the caller's.
func TestDeadlineExceededLogLevel(t *testing.T) {
	t.Parallel()
	downstream := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&waitPing{}, srv.HandlerOptions()...))
	})
	var logs syncBuffer
	s := kittest.NewServer(t, kit.Config{CallTimeout: 150 * time.Millisecond}, func(srv *kit.Server) {
		svc := &relayPing{downstream: pingv1connect.NewPingServiceClient(downstream.HTTP2Client(), downstream.URL)}
		srv.Mount(pingv1connect.NewPingServiceHandler(svc, srv.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	for _, tc := range []struct {
		id, text string
		timeout  string // the caller's Connect-Timeout-Ms; "": none
	}{
		{id: "callers-deadline", timeout: "150"},
		{id: "kit-call-timeout"},
		{id: "handlers-own", text: "own", timeout: "60000"},
	} {
		// The caller's deadline goes in the header alone: a client that
		// gives up at it cancels the call, which the server then sees
		// Canceled, before its own timer.
		header := http.Header{"X-Request-Id": {tc.id}}
		if tc.timeout != "" {
			header.Set("Connect-Timeout-Ms", tc.timeout)
		}
		resp, body := restCall(t, s.HTTP2Client(), http.MethodPost, s.URL+pingv1connect.PingServicePingProcedure, `{"text":"`+tc.text+`"}`, header)
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, `"deadline_exceeded"`) {
			t.Errorf("%s: Ping = %d %s, want deadline_exceeded", tc.id, resp.StatusCode, body)
		}
	}
	waitFor(t, "3 rpc lines", func() bool { return len(logLines(t, &logs, "rpc")) >= 3 })
	lines := logLines(t, &logs, "rpc")
	for _, tc := range []struct{ id, level string }{{"callers-deadline", "WARN"}, {"kit-call-timeout", "ERROR"}, {"handlers-own", "ERROR"}} {
		var found bool
		for _, line := range lines {
			if line["request_id"] == tc.id {
				found = true
				if line["code"] != "deadline_exceeded" || line["level"] != tc.level {
					t.Errorf("%s: rpc line %v, want deadline_exceeded at %s", tc.id, line, tc.level)
				}
			}
		}
		if !found {
			t.Errorf("%s: no rpc line", tc.id)
		}
	}
}
