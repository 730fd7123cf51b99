package kit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// stuckStreams' streams ignore the server's shutdown: CountUp sends one
// message and waits for its context; Sum and CumSum wait in Receive for
// messages their clients never send. entered gets a value once each stream
// is under way.
type stuckStreams struct {
	*pingServer
	entered chan struct{}
}

func (s *stuckStreams) CountUp(ctx context.Context, _ *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	if err := stream.Send(&pingv1.CountUpResponse{Number: 1}); err != nil {
		return err
	}
	s.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stuckStreams) Sum(_ context.Context, stream *connect.ClientStream[pingv1.SumRequest]) (*connect.Response[pingv1.SumResponse], error) {
	for first := true; stream.Receive(); first = false {
		if first {
			s.entered <- struct{}{}
		}
	}
	return nil, stream.Err()
}

func (s *stuckStreams) CumSum(_ context.Context, stream *connect.BidiStream[pingv1.CumSumRequest, pingv1.CumSumResponse]) error {
	for {
		req, err := stream.Receive()
		if err != nil {
			return err
		}
		if err := stream.Send(&pingv1.CumSumResponse{Sum: req.GetNumber()}); err != nil {
			return err
		}
		s.entered <- struct{}{}
	}
}

// Calls still running at KIT_SHUTDOWN_TIMEOUT were cut by closing their
// connections: every connect client read that as "internal: protocol
// error: incomplete envelope", which reads as a server bug and which
// clients do not retry, and the server logged and counted the calls as
// cancelled by their clients. Their contexts are now cancelled first, and
// the calls end with Unavailable ("the server is shutting down"), which
// clients may retry elsewhere, as grpc-go's clients get from a grpc-go
// server's Stop; streams waiting in Receive are cut too.
func TestShutdownTimeoutEndsCallsWithUnavailable(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	svc := &stuckStreams{pingServer: blockingPing(), entered: make(chan struct{}, 64)}
	srv := kittest.NewServer(t, kit.Config{ShutdownTimeout: 300 * time.Millisecond}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	calls := 0
	for _, p := range srv.Protocols() {
		client := newPingClient(srv, p.Client, p.Options...)
		calls++
		wg.Go(func() { // a unary call whose handler waits for its context
			_, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{}))
			errs <- wrap(p.Name+" Ping", err)
		})
		if p.Name == "grpc" {
			<-svc.pingServer.entered
		}
		calls++
		stream, err := client.CountUp(context.Background(), connect.NewRequest(&pingv1.CountUpRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		<-svc.entered
		wg.Go(func() {
			for stream.Receive() {
			}
			errs <- wrap(p.Name+" CountUp", stream.Err())
		})
		if p.Client != srv.HTTP2Client() {
			continue // client and bidi streams over HTTP/2 only
		}
		calls++
		sum := client.Sum(context.Background())
		if err := sum.Send(&pingv1.SumRequest{Number: 1}); err != nil {
			t.Fatal(err)
		}
		<-svc.entered
		wg.Go(func() { // keeps its stream open, as a client with more to send
			for sum.Send(&pingv1.SumRequest{Number: 1}) == nil {
				time.Sleep(20 * time.Millisecond)
			}
			_, err := sum.CloseAndReceive()
			errs <- wrap(p.Name+" Sum", err)
		})
		calls++
		bidi := client.CumSum(context.Background())
		if err := bidi.Send(&pingv1.CumSumRequest{Number: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := bidi.Receive(); err != nil {
			t.Fatal(err)
		}
		<-svc.entered
		wg.Go(func() {
			_, err := bidi.Receive()
			errs <- wrap(p.Name+" CumSum", err)
		})
	}
	// Every Ping is in the chain (entered closes on the first), so that
	// each is logged and counted; a fixed sleep missed one under load.
	pings := map[string]string{"grpc_method": "Ping"}
	waitFor(t, "every Ping in the chain", func() bool {
		return counterValue(t, srv.Registry(), "grpc_server_started_total", pings) == float64(len(srv.Protocols()))
	})

	if err := srv.Stop(); err == nil || !strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Errorf("Run = %v, want the calls cut at the shutdown timeout", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("%v, want unavailable", err)
		}
	}
	lines := 0
	for _, line := range logLines(t, &logs, "rpc") {
		lines++
		if line["code"] != "unavailable" {
			t.Errorf("%v %v logged with code %v, want unavailable", line["procedure"], line["protocol"], line["code"])
		}
	}
	if lines != calls {
		t.Errorf("%d rpc lines for %d calls", lines, calls)
	}
	labels := map[string]string{"grpc_code": "Unavailable", "grpc_service": "connectkit.ping.v1.PingService"}
	if n := counterValue(t, srv.Registry(), "grpc_server_handled_total", labels); n != float64(calls) {
		t.Errorf("grpc_server_handled_total%v = %v, want %d", labels, n, calls)
	}
}

func wrap(what string, err error) error {
	if err == nil {
		return errors.New(what + ": no error")
	}
	if errors.Is(err, io.EOF) {
		return errors.New(what + ": EOF")
	}
	return connect.NewError(connect.CodeOf(err), errors.New(what+": "+err.Error()))
}
