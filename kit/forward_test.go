package kit_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// CountUp fails, before any message, with the error of a Fail call of
// code number to the other service, returned as is.
func (f *forwardingPing) CountUp(ctx context.Context, req *connect.Request[pingv1.CountUpRequest], _ *connect.ServerStream[pingv1.CountUpResponse]) error {
	_, err := f.next.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(req.Msg.GetNumber())}))
	return err
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

// A gRPC call whose handler returns as is the error of a call it made
// with srv.ClientOptions() is answered as connect answers it: its code
// and message, the response header of a gRPC answer and none of the
// other server's metadata. connect's client puts the other server's
// response header and trailers in that error's metadata (Content-Type,
// Content-Length, X-Request-Id, …), which connect's server does not send
// for such an error (a wire error); headerFields, seeing fields there
// that trailers may not carry, set Content-Type and Content-Length on
// the response header (a stream's, which connect does not filter: a
// second Content-Type, the other server's application/json, and a
// Content-Length on an answer without a body), and sent the rest in the
// trailers on a copy that was no longer a wire error.
func TestForwardedErrorSendsNoBackendMetadataOverGRPC(t *testing.T) {
	t.Parallel()
	backend := newPingServer(t, kit.Config{}, nil)
	for _, chain := range []struct {
		name  string
		opts  []kit.Option
		allow []string // the trailers' fields
	}{
		{name: "default chain", allow: []string{"Grpc-Message", "Grpc-Status", "X-Request-Id"}}, // RequestID's on a unary call
		{name: "without the default chain", opts: []kit.Option{kit.WithoutDefaultInterceptors()}, allow: []string{"Grpc-Message", "Grpc-Status"}},
	} {
		for _, name := range []string{"connect", "grpc", "grpcweb"} {
			t.Run(chain.name+"/backend over "+name, func(t *testing.T) {
				t.Parallel()
				fwd := &forwardingPing{}
				front := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
					s.Mount(pingv1connect.NewPingServiceHandler(fwd, s.HandlerOptions()...))
					fwd.next = newPingClient(backend, backend.HTTP2Client(), append(s.ClientOptions(), clientProtocols[name]...)...)
				}, chain.opts...)
				for _, call := range []struct {
					procedure string
					msg       []byte // FailRequest{code: 5} and CountUpRequest{number: 5}
				}{
					{procedure: pingv1connect.PingServiceFailProcedure, msg: []byte{8, 5}},
					{procedure: pingv1connect.PingServiceCountUpProcedure, msg: []byte{8, 5}},
				} {
					res, err := grpcCall(t, front, call.procedure, call.msg)
					if err != nil {
						t.Errorf("%s: reading the answer: %v", call.procedure, err)
					}
					if got := res.Header.Values("Content-Type"); len(got) != 1 || got[0] != "application/grpc" || res.Header.Get("Content-Length") != "" {
						t.Errorf("%s: header %v, want one Content-Type, application/grpc, and no Content-Length", call.procedure, res.Header)
					}
					trailer := grpcTrailers(res)
					if trailer.Get("Grpc-Status") != "5" || trailer.Get("Grpc-Message") != "failed as asked" {
						t.Errorf("%s: trailers %v, want grpc-status 5 and grpc-message failed as asked", call.procedure, trailer)
					}
					for k := range trailer {
						if !slices.Contains(chain.allow, k) {
							t.Errorf("%s: trailers %v, want none but %v", call.procedure, trailer, chain.allow)
						}
					}
				}
				stream, err := grpcConn(t, front.Addr().String()).NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, pingv1connect.PingServiceCountUpProcedure)
				if err != nil {
					t.Fatal(err)
				}
				if err := stream.SendMsg(&pingv1.CountUpRequest{Number: int64(connect.CodeNotFound)}); err != nil {
					t.Fatal(err)
				}
				_ = stream.CloseSend()
				if err := stream.RecvMsg(new(pingv1.CountUpResponse)); status.Code(err) != codes.NotFound {
					t.Errorf("grpc-go CountUp: %v, want NotFound", err)
				}
			})
		}
	}
}

// grpcTrailers returns the trailers of a gRPC response that net/http read:
// its trailers, or, for a Trailers-Only response (an error before any
// message, which kit sends as grpc-go does), its header but for the fields
// every response has there.
func grpcTrailers(res *http.Response) http.Header {
	if res.Trailer.Get("Grpc-Status") != "" || res.Header.Get("Grpc-Status") == "" {
		return res.Trailer
	}
	trailer := res.Header.Clone()
	for _, k := range []string{"Content-Type", "Date", "Grpc-Accept-Encoding"} {
		trailer.Del(k)
	}
	return trailer
}
