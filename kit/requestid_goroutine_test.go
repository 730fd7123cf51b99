package kit_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// latePing's Ping answers once its context is done, with a success: the
// reply of a handler that ignores its deadline.
type latePing struct{ pingServer }

func (p *latePing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	<-ctx.Done()
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

// TestRequestIDUnderTimeoutHandler mounts a service behind
// http.TimeoutHandler, which runs it on a goroutine of its own with a
// ResponseWriter of its own, and writes its 503 to the connection's while
// that goroutine may still run. The request id of a call that answers
// after the timeout must not be written to the connection's response from
// that goroutine (the race detector reports it; without -race, a
// concurrent map write can crash the process). Over HTTP/1.1 (Connect)
// and for gRPC over HTTP/2, whose id kit's server echoes before the
// handler and whose chained mark the handler's goroutine sets
// (connctx.StreamEcho).
func TestRequestIDUnderTimeoutHandler(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		path, h := pingv1connect.NewPingServiceHandler(&latePing{}, srv.HandlerOptions()...)
		srv.Mount(path, http.TimeoutHandler(h, time.Millisecond, "timed out"))
	})
	var wg sync.WaitGroup
	for i := range 4 {
		client := newPingClient(s, s.HTTP1Client())
		if i%2 == 1 {
			client = newPingClient(s, s.HTTP2Client(), connect.WithGRPC())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				// The handler's reply and the timeout are ready at once:
				// TimeoutHandler sends either. The reply is latePing's
				// success, or DeadlineExceeded when the 1ms passed before
				// connect called latePing (connect's unary handler returns
				// its context's error then; on a loaded machine the chain
				// takes that long). The client sets no deadline of its own.
				_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
				if code := connect.CodeOf(err); err != nil && code != connect.CodeUnavailable && code != connect.CodeDeadlineExceeded {
					t.Errorf("Ping = %v; want the reply (OK or DeadlineExceeded) or the TimeoutHandler's 503 (Unavailable)", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
