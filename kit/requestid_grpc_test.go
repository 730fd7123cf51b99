package kit_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// challengingPing's Ping answers with the call's request id as its text
// (idTellingPing); asked for the text "fail", it fails, and for
// "challenge" it fails Unauthenticated with a WWW-Authenticate challenge
// in its error, which kit sends in the response header (not Trailers-Only).
type challengingPing struct{ idTellingPing }

func (p *challengingPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	switch req.Msg.GetText() {
	case "fail":
		return nil, connect.NewError(connect.CodeAborted, errors.New("failed as asked"))
	case "challenge":
		err := connect.NewError(connect.CodeUnauthenticated, errors.New("who are you"))
		err.Meta().Set("Www-Authenticate", `Bearer realm="kit"`)
		return nil, err
	}
	return p.idTellingPing.Ping(ctx, req)
}

// TestGRPCGoSeesTheRequestIDWhereItDid checks where a grpc-go client finds
// a unary gRPC call's X-Request-Id over HTTP/2, which kit's server writes
// into the response header before the handler runs (connctx.StreamEcho):
// once, in the response header, on success; once, in the trailers, on an
// error, Trailers-Only or not (as the RequestID interceptor put it there
// before); for an id the client sent that is valid, that id, and for none,
// an invalid or a too long one, a new one, the one the handler saw.
func TestGRPCGoSeesTheRequestIDWhereItDid(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&challengingPing{}, srv.HandlerOptions()...))
	})
	conn := grpcConn(t, s.Addr().String())
	for _, sent := range []string{"", "sent-id", "bad id", strings.Repeat("a", 129)} {
		for _, text := range []string{"", "fail", "challenge"} {
			ctx := t.Context()
			if sent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", sent)
			}
			var header, trailer metadata.MD
			var res pingv1.PingResponse
			err := conn.Invoke(ctx, grpcPing, &pingv1.PingRequest{Text: text}, &res, grpc.Header(&header), grpc.Trailer(&trailer))
			where, other := header, trailer
			if text != "" {
				where, other = trailer, header
				want := codes.Aborted
				if text == "challenge" {
					want = codes.Unauthenticated
					if got := header.Get("www-authenticate"); len(got) != 1 {
						t.Errorf("sent %q, %s: the challenge in the header: %q; want it once", sent, text, got)
					}
				}
				if status.Code(err) != want {
					t.Fatalf("sent %q, %s: %v; want %v", sent, text, err, want)
				}
			} else if err != nil {
				t.Fatalf("sent %q: %v", sent, err)
			}
			got := where.Get("x-request-id")
			if len(got) != 1 || got[0] == "" || len(got[0]) > 128 || strings.Contains(got[0], " ") {
				t.Fatalf("sent %q, %q: X-Request-Id %q; want one valid id", sent, text, got)
			}
			if extra := other.Get("x-request-id"); len(extra) != 0 {
				t.Errorf("sent %q, %q: X-Request-Id %q in the other frame too; want it once", sent, text, extra)
			}
			if sent == "sent-id" && got[0] != sent {
				t.Errorf("sent %q, %q: X-Request-Id %q; want the one sent", sent, text, got[0])
			}
			if text == "" && res.GetText() != got[0] {
				t.Errorf("sent %q: X-Request-Id %q, the handler saw %q; want the same", sent, got[0], res.GetText())
			}
		}
	}
}

// TestGRPCRefusedBeforeTheChainHasNoRequestID checks that a unary gRPC
// call over HTTP/2 that connect refuses before any interceptor (a message
// that does not decode) carries no X-Request-Id, in its header or
// trailers, though kit's server wrote one before the handler ran: as
// before kit wrote it, and as rejected calls are told from the chain's.
func TestGRPCRefusedBeforeTheChainHasNoRequestID(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	garbage := []byte{0, 0, 0, 0, 3, 0xff, 0xff, 0xff} // one message, 3 bytes that are no PingRequest
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+grpcPing, bytes.NewReader(garbage))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Request-Id", "refused-id")
	res, err := s.HTTP2Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := bytes.NewBuffer(nil).ReadFrom(res.Body); err != nil {
		t.Fatal(err)
	}
	code := res.Header.Get("Grpc-Status") + res.Trailer.Get("Grpc-Status")
	if code != "3" && code != "13" {
		t.Fatalf("grpc-status %q (header %v, trailer %v); want connect's refusal", code, res.Header, res.Trailer)
	}
	if got := append(res.Header.Values("X-Request-Id"), res.Trailer.Values("X-Request-Id")...); len(got) != 0 {
		t.Errorf("X-Request-Id %q on a call connect refused before the chain; want none", got)
	}
}

// TestGRPCWithoutRequestIDHasNoRequestID checks that a unary gRPC call
// over HTTP/2 to a server whose chain has no RequestID carries no
// X-Request-Id: kit's server writes none then.
func TestGRPCWithoutRequestIDHasNoRequestID(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil, kit.WithoutDefaultInterceptors())
	var header, trailer metadata.MD
	var res pingv1.PingResponse
	if err := grpcConn(t, s.Addr().String()).Invoke(t.Context(), grpcPing, &pingv1.PingRequest{}, &res, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	if got := slices.Concat(header.Get("x-request-id"), trailer.Get("x-request-id")); len(got) != 0 {
		t.Errorf("X-Request-Id %q without RequestID in the chain; want none", got)
	}
}

// TestGRPCAnsweredBeforeConnectKeepsItsRequestID checks that a unary gRPC
// call over HTTP/2 that a handler between kit and connect answers itself,
// with the X-Request-Id it read from the request in its response header,
// keeps that field: kit's server, which wrote the id into the request
// before that handler ran (connctx.StreamEcho), drops its own copy of a
// call that did not reach the chain, not the handler's. It did drop the
// handler's, whose value is kit's: the client got no id.
func TestGRPCAnsweredBeforeConnectKeepsItsRequestID(t *testing.T) {
	t.Parallel()
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		path, h := pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...)
		srv.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Refuse") == "" {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "7")
			w.Header().Set("Grpc-Message", "refused by the middleware")
			w.WriteHeader(http.StatusOK)
		}))
	})
	conn := grpcConn(t, s.Addr().String())
	for _, refuse := range []bool{true, false} {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "x-request-id", "sent-id")
		if refuse {
			ctx = metadata.AppendToOutgoingContext(ctx, "refuse", "yes")
		}
		var header, trailer metadata.MD
		var res pingv1.PingResponse
		err := conn.Invoke(ctx, grpcPing, &pingv1.PingRequest{}, &res, grpc.Header(&header), grpc.Trailer(&trailer))
		if want := map[bool]codes.Code{true: codes.PermissionDenied, false: codes.OK}[refuse]; status.Code(err) != want {
			t.Fatalf("refused %v: %v; want %v", refuse, err, want)
		}
		if got := slices.Concat(header.Get("x-request-id"), trailer.Get("x-request-id")); !slices.Equal(got, []string{"sent-id"}) {
			t.Errorf("refused %v: X-Request-Id %q; want the one sent, once", refuse, got)
		}
	}
}
