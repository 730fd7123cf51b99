package kit_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// idSettingPing's Ping sets an X-Request-Id of its own on its response,
// and its Fail on its error.
type idSettingPing struct{ pingServer }

func (p *idSettingPing) Fail(ctx context.Context, req *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	_, err := p.pingServer.Fail(ctx, req)
	var ce *connect.Error
	if errors.As(err, &ce) {
		ce.Meta().Set(interceptors.RequestIDHeader, "the-handler's")
	}
	return nil, err
}

func (p *idSettingPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	res, err := p.pingServer.Ping(ctx, req)
	if err == nil {
		res.Header().Set(interceptors.RequestIDHeader, "the-handler's")
	}
	return res, err
}

// TestRequestIDEchoedOnce checks that every protocol's response carries the
// call's request id exactly once: on success, on error, and when the
// handler set an id of its own on its response.
func TestRequestIDEchoedOnce(t *testing.T) {
	t.Parallel()
	plain := newPingServer(t, kit.Config{}, nil)
	setting := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&idSettingPing{}, srv.HandlerOptions()...))
	})
	for _, s := range []struct {
		name string
		srv  *kittest.Server
	}{{"plain", plain}, {"handler sets one", setting}} {
		for _, p := range s.srv.Protocols() {
			t.Run(s.name+"/"+p.Name, func(t *testing.T) {
				t.Parallel()
				client := newPingClient(s.srv, p.Client, p.Options...)
				req := connect.NewRequest(&pingv1.PingRequest{Number: 1})
				req.Header().Set(interceptors.RequestIDHeader, "call-"+p.Name)
				res, err := client.Ping(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Header().Values(interceptors.RequestIDHeader); !slices.Equal(got, []string{"call-" + p.Name}) {
					t.Errorf("Ping's X-Request-Id: %q; want the call's, once", got)
				}
				fail := connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeAborted)})
				fail.Header().Set(interceptors.RequestIDHeader, "fail-"+p.Name)
				_, err = client.Fail(t.Context(), fail)
				var ce *connect.Error
				if !errors.As(err, &ce) {
					t.Fatalf("Fail = %v; want a connect error", err)
				}
				if got := ce.Meta().Values(interceptors.RequestIDHeader); !slices.Equal(got, []string{"fail-" + p.Name}) {
					t.Errorf("Fail's X-Request-Id: %q; want the call's, once", got)
				}
			})
		}
	}
}

// idTellingPing's Ping answers with the call's request id as its text.
type idTellingPing struct{ pingServer }

func (*idTellingPing) Ping(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Text: interceptors.RequestIDFrom(ctx)}), nil
}

// TestRequestIDWrittenBeforeTheHandler checks that, over HTTP/1.x and for
// a unary gRPC call over HTTP/2, kit's server writes a call's request id
// into its HTTP response header before the service's handler runs
// (connctx.State.EchoRequestID, connctx.StreamEcho, which spare RequestID
// a response header of the call's own), and that the id is the one the
// handler sees and the client gets once, whether the client sent one or
// not. Over HTTP/2, other calls' RequestID echoes it through connect.
func TestRequestIDWrittenBeforeTheHandler(t *testing.T) {
	t.Parallel()
	var before atomic.Pointer[string]
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		path, h := pingv1connect.NewPingServiceHandler(&idTellingPing{}, srv.HandlerOptions()...)
		srv.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := w.Header().Get(interceptors.RequestIDHeader)
			before.Store(&id)
			h.ServeHTTP(w, r)
		}))
	})
	pingWithIDs(t, s, s.Protocols(), func(p kittest.Protocol, sent, id string) {
		want := ""
		if strings.HasSuffix(p.Name, "/http1") || p.Name == "grpc" {
			want = id
		}
		if got := *before.Load(); got != want {
			t.Errorf("%s, sent %q: X-Request-Id before the handler ran: %q; want %q", p.Name, sent, got, want)
		}
	})
}

// TestRequestIDOfGRPCOverHTTP1EchoedOnce checks that a gRPC call over
// HTTP/1.1, whose id kit's server writes into the response header as it
// does any HTTP/1.x call's, gets that id once, the one its handler saw:
// RequestID must not add one of its own.
func TestRequestIDOfGRPCOverHTTP1EchoedOnce(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&idTellingPing{}, srv.HandlerOptions()...))
	})
	grpc := kittest.Protocol{Name: "grpc/http1", Client: s.HTTP1Client(), Options: []connect.ClientOption{connect.WithGRPC()}}
	pingWithIDs(t, s, []kittest.Protocol{grpc}, nil)
}

// A handler between kit and the service that copies the request (r.Clone)
// leaves the call one request id, the handler's, over every protocol.
func TestRequestIDOfAClonedRequest(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		path, h := pingv1connect.NewPingServiceHandler(&idTellingPing{}, srv.HandlerOptions()...)
		srv.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.Clone(r.Context()))
		}))
	})
	pingWithIDs(t, s, s.Protocols(), nil)
}

// pingWithIDs pings s's idTellingPing over each protocol, without a request
// id and with one, and checks that the response carries one id, the one
// the handler saw (the one sent, if any); then it calls also, if not nil.
func pingWithIDs(t *testing.T, s *kittest.Server, protocols []kittest.Protocol, also func(p kittest.Protocol, sent, id string)) {
	t.Helper()
	for _, p := range protocols {
		client := newPingClient(s, p.Client, p.Options...)
		for _, sent := range []string{"", "sent-" + p.Name} {
			req := connect.NewRequest(&pingv1.PingRequest{})
			if sent != "" {
				req.Header().Set(interceptors.RequestIDHeader, sent)
			}
			res, err := client.Ping(t.Context(), req)
			if err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			id := res.Msg.GetText()
			if got := res.Header().Values(interceptors.RequestIDHeader); id == "" || !slices.Equal(got, []string{id}) || (sent != "" && id != sent) {
				t.Errorf("%s, sent %q: X-Request-Id %q, the handler saw %q; want one id, the handler's", p.Name, sent, got, id)
			}
			if also != nil {
				also(p, sent, id)
			}
		}
	}
}
