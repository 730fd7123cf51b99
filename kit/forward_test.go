package kit_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// forwardingPing fails its Fail calls with the error of the same call to
// another service, returned as is.
type forwardingPing struct {
	pingv1connect.UnimplementedPingServiceHandler
	next pingv1connect.PingServiceClient
}

func (f *forwardingPing) Fail(ctx context.Context, req *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	_, err := f.next.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: req.Msg.GetCode()}))
	return nil, err
}

// A handler that returns as is the error of a call it made with
// srv.ClientOptions() answers with its code, message and details, and
// echoes the request id, as on any error: connect sends no metadata of an
// error received from a server (a wire error), so the RequestID
// interceptor makes it anew.
func TestForwardedErrorEchoesRequestID(t *testing.T) {
	t.Parallel()
	backend := newPingServer(t, kit.Config{}, nil)
	fwd := &forwardingPing{}
	front := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(fwd, s.HandlerOptions()...))
		fwd.next = newPingClient(backend, backend.HTTP2Client(), s.ClientOptions()...)
	})
	for _, p := range front.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			req := connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)})
			req.Header().Set("X-Request-Id", "forwarded-"+p.Name)
			_, err := newPingClient(front, p.Client, p.Options...).Fail(t.Context(), req)
			var ce *connect.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *connect.Error", err)
			}
			if ce.Code() != connect.CodeNotFound || ce.Message() != "failed as asked" {
				t.Errorf("err = %v, want the backend's not_found: failed as asked", err)
			}
			if got := ce.Meta().Values("X-Request-Id"); len(got) != 1 || got[0] != "forwarded-"+p.Name {
				t.Errorf("X-Request-Id = %q, want [%q]", got, "forwarded-"+p.Name)
			}
		})
	}
}

// reusingPing answers Ping with the answer of another service to the very
// request it received, which connect's client rewrites (its procedure,
// peer and protocol headers).
type reusingPing struct {
	pingv1connect.UnimplementedPingServiceHandler
	next pingv1connect.PingServiceClient
}

func (f *reusingPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return f.next.Ping(ctx, req)
}

// The log line of a call whose handler passes its own request to a client
// still describes that call, a server call from the caller, not the call
// the client made with it.
func TestLogLineOfAHandlerThatReusesItsRequest(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	backend := newPingServer(t, kit.Config{}, nil)
	fwd := &reusingPing{}
	front := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(fwd, s.HandlerOptions()...))
		fwd.next = newPingClient(backend, backend.HTTP2Client(), s.ClientOptions()...)
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if _, err := newPingClient(front, front.HTTP1Client()).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatal(err)
	}
	var server map[string]any
	for _, line := range logLines(t, &logs, "rpc") {
		if line["kind"] == "server" {
			server = line
		}
	}
	if server == nil {
		t.Fatalf("no server line in %s", logs.String())
	}
	if server["http"] != "HTTP/1.1" || server["protocol"] != "connect" {
		t.Errorf("server line %v: want the front call's http HTTP/1.1 and protocol connect", server)
	}
	if peer := server["peer"]; peer == strings.TrimPrefix(backend.URL, "http://") {
		t.Errorf("server line's peer is the backend's address %s", peer)
	}
}

// panickingReuse passes its own request to a client of another procedure,
// then panics.
type panickingReuse struct {
	pingv1connect.UnimplementedPingServiceHandler
	next *connect.Client[pingv1.PingRequest, pingv1.PingResponse]
}

func (p *panickingReuse) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	_, _ = p.next.CallUnary(ctx, req)
	panic("after a downstream call")
}

// A handler that passes its own request to a client and then panics is
// logged once, on its call's rpc line: Recovery took the client call's
// procedure for the call's and, finding it not the one Logging logs, wrote
// a panic line of its own naming the other procedure.
func TestPanicOfAHandlerThatReusesItsRequest(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	backend := newPingServer(t, kit.Config{}, nil)
	h := &panickingReuse{}
	front := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(h, s.HandlerOptions()...))
		h.next = connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](backend.HTTP2Client(), backend.URL+"/connectkit.ping.v1.PingService/Other", s.ClientOptions()...)
	}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	_, err := newPingClient(front, front.HTTP1Client()).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
	if connect.CodeOf(err) != connect.CodeInternal {
		t.Fatalf("Ping = %v, want internal", err)
	}
	if lines := logLines(t, &logs, "panic"); len(lines) != 0 {
		t.Errorf("a panic line besides the rpc line: %v", lines)
	}
	var server map[string]any
	for _, line := range logLines(t, &logs, "rpc") {
		if line["kind"] == "server" && line["procedure"] == pingv1connect.PingServicePingProcedure {
			server = line
		}
	}
	if server == nil || server["panic"] != "after a downstream call" {
		t.Errorf("the call's rpc line %v does not carry the panic", server)
	}
}
