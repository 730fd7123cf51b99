package kit_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"reflect"
	"strings"
	"sync"
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

// challengeRealm is the WWW-Authenticate of challengePing's errors.
const challengeRealm = `Bearer realm="test"`

// errChallenge is the error errorPing returns in TestHandlerChallengeReachesGRPCClients, shared by every call
// as a handler's package-level error would be.
var errChallenge = func() *connect.Error {
	err := connect.NewError(connect.CodeUnauthenticated, errors.New("sign in"))
	err.Meta().Set("WWW-Authenticate", challengeRealm)
	err.Meta().Set("Challenge-Id", "42") // a field trailers may carry
	return err
}()

// serverChains are the options of kit's two server chains: the default
// chain, and the one WithoutDefaultInterceptors leaves.
var serverChains = []struct {
	name string
	opts []kit.Option
}{
	{name: "default chain"},
	{name: "without the default chain", opts: []kit.Option{kit.WithoutDefaultInterceptors()}},
}

// errorPing fails Ping and CountUp, before any message, with err, the
// same error for every call, as a handler that authorizes each method
// itself, or that returns a package-level error, does.
type errorPing struct {
	pingServer
	err error
}

func (p *errorPing) Ping(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return nil, p.err
}

func (p *errorPing) CountUp(context.Context, *connect.Request[pingv1.CountUpRequest], *connect.ServerStream[pingv1.CountUpResponse]) error {
	return p.err
}

// grpcCall makes a gRPC call of procedure to srv over HTTP/2 with msg,
// the request message's encoding, and returns its answer, whose body it
// has read, and the error of that read.
func grpcCall(t *testing.T, srv *kittest.Server, procedure string, msg []byte) (*http.Response, error) {
	t.Helper()
	return grpcCallContext(t.Context(), t, srv, procedure, msg)
}

// grpcCallContext is grpcCall with the request's context.
func grpcCallContext(ctx context.Context, t *testing.T, srv *kittest.Server, procedure string, msg []byte) (*http.Response, error) {
	t.Helper()
	body := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+procedure, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	res, err := srv.HTTP2Client().Do(req)
	if err != nil {
		t.Fatalf("%s: %v", procedure, err)
	}
	_, err = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res, err
}

// A handler's (or an interceptor's) *connect.Error whose metadata has
// WWW-Authenticate reaches gRPC clients with it, in the response header,
// where connect's gRPC error writer put it in the trailers, which
// net/http's HTTP/2 server dropped, logging `ignoring invalid trailer
// "Www-Authenticate"`; the other fields stay in the trailers, and the
// error shared by every call is left as it was.
func TestHandlerChallengeReachesGRPCClients(t *testing.T) {
	t.Parallel()
	refuse := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if req.Spec().Procedure == pingv1connect.PingServiceFailProcedure {
				return nil, errChallenge
			}
			return next(ctx, req)
		}
	})
	for _, tc := range serverChains {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := new(syncBuffer)
			opts := append([]kit.Option{kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), kit.WithInterceptors(refuse)}, tc.opts...)
			srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
				srv.Mount(pingv1connect.NewPingServiceHandler(&errorPing{err: errChallenge}, srv.HandlerOptions()...))
			}, opts...)
			check := func(who string, err error, meta http.Header) {
				t.Helper()
				if connect.CodeOf(err) != connect.CodeUnauthenticated || meta.Get("WWW-Authenticate") != challengeRealm || meta.Get("Challenge-Id") != "42" {
					t.Errorf("%s: %v with metadata %v, want unauthenticated with WWW-Authenticate %s and Challenge-Id 42", who, err, meta, challengeRealm)
				}
			}
			for _, p := range srv.Protocols() {
				client := newPingClient(srv, p.Client, p.Options...)
				_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
				var ce *connect.Error
				errors.As(err, &ce)
				check(p.Name+" handler", err, ce.Meta())
				_, err = client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: 1}))
				ce = nil
				errors.As(err, &ce)
				check(p.Name+" interceptor", err, ce.Meta())
				stream, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
				if err != nil {
					t.Fatalf("%s: CountUp: %v", p.Name, err)
				}
				for stream.Receive() {
				}
				ce = nil
				errors.As(stream.Err(), &ce)
				meta := ce.Meta()
				if p.Name == "grpc" || p.Name == "grpcweb/h2c" || p.Name == "grpcweb/http1" {
					// connect's client reads a stream's error metadata
					// from the trailers, and the header it got apart.
					meta = stream.ResponseHeader().Clone()
					for k, v := range stream.ResponseTrailer() {
						meta[k] = append(meta[k], v...)
					}
				}
				check(p.Name+" stream", stream.Err(), meta)
				_ = stream.Close()
			}
			conn := grpcConn(t, srv.Addr().String())
			for _, method := range []string{grpcPing, "/connectkit.ping.v1.PingService/Fail"} {
				var header, trailer metadata.MD
				var res pingv1.PingResponse
				err := conn.Invoke(t.Context(), method, &pingv1.PingRequest{Number: 1}, &res, grpc.Header(&header), grpc.Trailer(&trailer))
				if status.Code(err) != codes.Unauthenticated || strings.Join(header.Get("www-authenticate"), ",") != challengeRealm || strings.Join(trailer.Get("challenge-id"), ",") != "42" {
					t.Errorf("grpc-go %s: %v with header %v and trailer %v, want Unauthenticated, www-authenticate %s in the header and challenge-id 42 in the trailer", method, err, header, trailer, challengeRealm)
				}
			}
			res, err := http.Get(srv.URL + "/v1/ping/1")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != challengeRealm {
				t.Errorf("REST: %s with header %v, want 401 with WWW-Authenticate %s", res.Status, res.Header, challengeRealm)
			}
			if strings.Contains(logs.String(), "invalid trailer") {
				t.Errorf("the server logged a dropped trailer:\n%s", logs)
			}
			if got := errChallenge.Meta().Get("WWW-Authenticate"); got != challengeRealm {
				t.Errorf("the handler's error lost its WWW-Authenticate: %q", got)
			}
		})
	}
}

// errFraming is an error whose metadata has a challenge and fields that
// describe a response's framing, as an error a handler builds from
// another HTTP answer's header may.
var errFraming = func() *connect.Error {
	err := connect.NewError(connect.CodeUnauthenticated, errors.New("sign in"))
	err.Meta().Set("WWW-Authenticate", challengeRealm)
	err.Meta().Set("Content-Type", "text/html")
	err.Meta().Set("Content-Length", "5")
	err.Meta().Set("Content-Encoding", "br")
	return err
}()

// A gRPC stream's error moves its challenge to the response header but
// not the fields of its metadata that describe a response's framing,
// which connect drops from an error's metadata in every protocol: in the
// header of a stream, which connect does not filter, they gave the answer
// a second Content-Type and a Content-Length that net/http then cut it
// at (unexpected EOF, no grpc-status).
func TestErrorFramingFieldsStayOutOfGRPCHeader(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&errorPing{err: errFraming}, srv.HandlerOptions()...))
	})
	res, err := grpcCall(t, srv, pingv1connect.PingServiceCountUpProcedure, []byte{8, 1}) // CountUpRequest{number: 1}
	if err != nil {
		t.Errorf("reading the answer: %v", err)
	}
	if got := res.Header.Values("Content-Type"); len(got) != 1 || got[0] != "application/grpc" || res.Header.Get("Content-Length") != "" || res.Header.Get("Content-Encoding") != "" {
		t.Errorf("header %v, want one Content-Type, application/grpc, and no Content-Length or Content-Encoding", res.Header)
	}
	if res.Header.Get("WWW-Authenticate") != challengeRealm || res.Trailer.Get("Grpc-Status") != "16" {
		t.Errorf("header %v and trailers %v, want WWW-Authenticate %s and grpc-status 16", res.Header, res.Trailer, challengeRealm)
	}
}

// errShared is an error without metadata, returned to every call, as a
// handler's package-level error is.
var errShared = connect.NewError(connect.CodeNotFound, errors.New("no such thing"))

// A *connect.Error without metadata that a handler returns to every
// call is not written to by kit's chain: headerFields asked it for its
// Meta(), which makes the map it lacks, on the shared error, a write that
// concurrent gRPC calls raced on (go test -race), where connect reads the
// field itself.
func TestSharedErrorWithoutMetadataIsNotWritten(t *testing.T) {
	t.Parallel()
	for _, tc := range serverChains {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
				srv.Mount(pingv1connect.NewPingServiceHandler(&errorPing{err: errShared}, srv.HandlerOptions()...))
			}, tc.opts...)
			client := newPingClient(srv, srv.HTTP2Client(), connect.WithGRPC())
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); connect.CodeOf(err) != connect.CodeNotFound {
						t.Errorf("Ping: %v, want not_found", err)
					}
					stream, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
					if err != nil {
						t.Errorf("CountUp: %v", err)
						return
					}
					for stream.Receive() {
					}
					if connect.CodeOf(stream.Err()) != connect.CodeNotFound {
						t.Errorf("CountUp: %v, want not_found", stream.Err())
					}
					_ = stream.Close()
				})
			}
			wg.Wait()
			// connect's Error has no other way to tell that its metadata
			// was never made.
			if !reflect.ValueOf(errShared).Elem().FieldByName("meta").IsNil() {
				t.Errorf("the shared error's metadata was made: %v", errShared.Meta())
			}
		})
	}
}

// errHopByHop is an error whose metadata repeats the challenge that
// hopPing sets on the response header, and holds connection-specific
// fields, as an error a handler builds from another HTTP answer's header
// may.
var errHopByHop = func() *connect.Error {
	err := connect.NewError(connect.CodeUnauthenticated, errors.New("sign in"))
	err.Meta().Set("WWW-Authenticate", challengeRealm)
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade"} {
		err.Meta().Set(k, "close")
	}
	return err
}()

// hopPing fails Ping and CountUp with errHopByHop, having set its
// challenge on the response header.
type hopPing struct{ pingServer }

func (*hopPing) Ping(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
		info.ResponseHeader().Set("WWW-Authenticate", challengeRealm)
	}
	return nil, errHopByHop
}

func (*hopPing) CountUp(_ context.Context, _ *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	stream.ResponseHeader().Set("WWW-Authenticate", challengeRealm)
	return errHopByHop
}

// A gRPC call's error whose metadata repeats a field of the response
// header sends it once, and its connection-specific fields (RFC 9113
// 8.2.2) nowhere: moved to the header, the challenge went out twice,
// net/http's HTTP/2 server sent Keep-Alive, Proxy-Connection and Upgrade
// in it, and took "Connection: close" as a request to close the client's
// connection (a GOAWAY), so that the next call dialed a new one.
func TestErrorHopByHopFieldsStayOutOfGRPCHeader(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&hopPing{}, srv.HandlerOptions()...))
	})
	calls := []struct {
		procedure string
		msg       []byte
	}{
		{procedure: pingv1connect.PingServicePingProcedure, msg: []byte{8, 1}},
		{procedure: pingv1connect.PingServiceCountUpProcedure, msg: []byte{8, 1}},
		{procedure: pingv1connect.PingServicePingProcedure, msg: []byte{8, 1}},
	}
	for i, c := range calls {
		var reused bool
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		})
		res, err := grpcCallContext(ctx, t, srv, c.procedure, c.msg)
		if err != nil {
			t.Errorf("%s: reading the answer: %v", c.procedure, err)
		}
		if got := res.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != challengeRealm || res.Trailer.Get("Grpc-Status") != "16" {
			t.Errorf("%s: WWW-Authenticate %q and trailers %v, want %q once and grpc-status 16", c.procedure, got, res.Trailer, challengeRealm)
		}
		for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade"} {
			if v, ok := res.Header[k]; ok {
				t.Errorf("%s: header has %s %q", c.procedure, k, v)
			}
			if v, ok := res.Trailer[k]; ok {
				t.Errorf("%s: trailers have %s %q", c.procedure, k, v)
			}
		}
		if i > 0 && !reused {
			t.Errorf("%s: the call dialed a new connection: the server closed the last one", c.procedure)
		}
	}
}

// A Connect unary call's error, whose metadata connect appends to the
// response header, sends a value the header has already once, and its
// connection-specific fields nowhere, over HTTP/1.1 and h2c: the
// challenge went out twice, Keep-Alive, Proxy-Connection, Te and Upgrade
// went out as they were, and over h2c "Connection: close" made net/http's
// server close the client's connection (a GOAWAY), as in gRPC's header;
// over HTTP/1.1 "Transfer-Encoding: close" broke the answer's framing
// (the client: too many transfer encodings). The same holds for a
// refusal of WithAuth's func.
func TestConnectErrorHopByHopFields(t *testing.T) {
	t.Parallel()
	mount := func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&hopPing{}, srv.HandlerOptions()...))
	}
	refuse := kit.WithAuth(func(context.Context, *http.Request) (any, error) { return nil, errHopByHop })
	for _, srv := range []*kittest.Server{kittest.NewServer(t, kit.Config{}, mount), kittest.NewServer(t, kit.Config{}, mount, refuse)} {
		connectErrorHopByHop(t, srv, pingv1connect.PingServicePingProcedure, `{"number":1}`)
	}
}

// connectErrorHopByHop makes two JSON POSTs of body to srv's path (a
// Connect call of Ping, a REST route's), over HTTP/1.1 and h2c, and checks
// their answers for TestConnectErrorHopByHopFields and
// TestRESTAuthErrorHopByHopFields.
func connectErrorHopByHop(t *testing.T, srv *kittest.Server, path, body string) {
	t.Helper()
	for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
		for i := range 2 {
			var reused bool
			ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
			})
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if got := res.Header.Values("WWW-Authenticate"); res.StatusCode != http.StatusUnauthorized || len(got) != 1 || got[0] != challengeRealm {
				t.Errorf("%s: %s with WWW-Authenticate %q, want 401 and %q once", res.Proto, res.Status, got, challengeRealm)
			}
			for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade"} {
				if v, ok := res.Header[k]; ok {
					t.Errorf("%s: header has %s %q", res.Proto, k, v)
				}
			}
			if i > 0 && !reused {
				t.Errorf("%s: the call dialed a new connection: the server closed the last one", res.Proto)
			}
		}
	}
}

// A gRPC-Web call's error answered as trailers-only, whose metadata
// connect puts in the response header with the status (a handler's
// error before any message or response header, a refusal of WithAuth's
// func), sends its connection-specific fields nowhere, over HTTP/1.1 and
// h2c, as gRPC's and Connect's errors do: over HTTP/1.1
// "Transfer-Encoding: close" broke the answer's framing, over h2c
// "Connection: close" made net/http's server close the client's
// connection (a GOAWAY), and the other fields went out as they were.
func TestGRPCWebErrorHopByHopFields(t *testing.T) {
	t.Parallel()
	mount := func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&errorPing{err: errHopByHop}, srv.HandlerOptions()...))
	}
	refuse := kit.WithAuth(func(context.Context, *http.Request) (any, error) { return nil, errHopByHop })
	for _, srv := range []*kittest.Server{kittest.NewServer(t, kit.Config{}, mount), kittest.NewServer(t, kit.Config{}, mount, refuse)} {
		for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
			for i, procedure := range []string{pingv1connect.PingServicePingProcedure, pingv1connect.PingServiceCountUpProcedure, pingv1connect.PingServicePingProcedure} {
				var reused bool
				ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
					GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
				})
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+procedure, bytes.NewReader([]byte{0, 0, 0, 0, 2, 8, 1}))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/grpc-web+proto")
				res, err := client.Do(req)
				if err != nil {
					t.Errorf("%s: %v", procedure, err)
					continue
				}
				body, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				// Trailers-only, or, once the RequestID interceptor set a
				// stream's id on its response header, trailers in the body.
				if got := res.Header.Get("Grpc-Status"); got != "16" && !bytes.Contains(body, []byte("grpc-status: 16")) {
					t.Errorf("%s %s: grpc-status %q and body %q, want 16", res.Proto, procedure, got, body)
				}
				for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade"} {
					if v, ok := res.Header[k]; ok {
						t.Errorf("%s %s: header has %s %q", res.Proto, procedure, k, v)
					}
				}
				if i > 0 && !reused {
					t.Errorf("%s %s: the call dialed a new connection: the server closed the last one", res.Proto, procedure)
				}
			}
		}
	}
}

// A REST call that WithAuth's func refuses with an error whose metadata
// has connection-specific fields sends them nowhere, over HTTP/1.1 and
// h2c, as a handler's error does: vanguard sends the Connect error's
// header on, so that over HTTP/1.1 "Transfer-Encoding: close" broke the
// answer's framing (Go's client: too many transfer encodings).
func TestRESTAuthErrorHopByHopFields(t *testing.T) {
	t.Parallel()
	refuse := kit.WithAuth(func(context.Context, *http.Request) (any, error) { return nil, errHopByHop })
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&errorPing{err: errHopByHop}, srv.HandlerOptions()...))
	}, refuse)
	connectErrorHopByHop(t, srv, "/v1/ping", `{"number":"1"}`)
}

// lowerPing fails Ping and CountUp with err, having set the challenge on
// the response header under key directly, not with Set, which net/http
// sends as it is, beside a canonical key's values.
type lowerPing struct {
	pingServer
	key string
	err error
}

func (p *lowerPing) Ping(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
		info.ResponseHeader()[p.key] = []string{challengeRealm}
	}
	return nil, p.err
}

func (p *lowerPing) CountUp(_ context.Context, _ *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	stream.ResponseHeader()[p.key] = []string{challengeRealm}
	return p.err
}

// A challenge set on the response header under a key in another case
// than the error's metadata's (h["www-authenticate"], which net/http
// sends as it is) goes out once, in gRPC, Connect and gRPC-Web, over
// HTTP/1.1 and h2c: the error's fields were compared with the header's
// canonical key alone, so that both went out.
func TestErrorChallengeInAnotherCaseOnce(t *testing.T) {
	t.Parallel()
	lowerMeta := connect.NewError(connect.CodeUnauthenticated, errors.New("sign in"))
	lowerMeta.Meta()["www-authenticate"] = []string{challengeRealm}
	for _, p := range []*lowerPing{
		{key: "www-authenticate", err: errChallenge},
		{key: "Www-Authenticate", err: lowerMeta},
	} {
		srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
			srv.Mount(pingv1connect.NewPingServiceHandler(p, srv.HandlerOptions()...))
		})
		check := func(what string, res *http.Response) {
			t.Helper()
			if got := res.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != challengeRealm {
				t.Errorf("header %q, error's metadata %v: %s %s: WWW-Authenticate %q, want %q once", p.key, p.err.(*connect.Error).Meta(), res.Proto, what, got, challengeRealm)
			}
		}
		for _, procedure := range []string{pingv1connect.PingServicePingProcedure, pingv1connect.PingServiceCountUpProcedure} {
			res, _ := grpcCall(t, srv, procedure, []byte{8, 1})
			check("gRPC "+procedure, res)
		}
		for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
			for _, c := range []struct{ what, ct, body string }{
				{what: "Connect", ct: "application/json", body: `{"number":1}`},
				{what: "gRPC-Web", ct: "application/grpc-web+proto", body: "\x00\x00\x00\x00\x02\x08\x01"},
			} {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+pingv1connect.PingServicePingProcedure, strings.NewReader(c.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", c.ct)
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				check(c.what, res)
			}
		}
	}
}

// A WithAuth refusal with a challenge and other metadata, to a browser's
// origin with CORS on, keeps the server's fields (rs/cors's Vary and
// Access-Control-*) in the response header, in every gRPC protocol and
// HTTP version: the challenge makes a gRPC answer header and trailers
// (as a grpc-go server's with header metadata), and only the status and
// the error's other metadata go in the trailers. (A cache, which gets
// Vary from the header alone, has no use of a gRPC POST's answer anyway.)
func TestAuthChallengeKeepsCORSFieldsInHeader(t *testing.T) {
	t.Parallel()
	const origin = "https://app.example.com"
	srv := kittest.NewServer(t, kit.Config{CORSAllowedOrigins: []string{origin}}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	}, kit.WithAuth(func(context.Context, *http.Request) (any, error) {
		err := connect.NewError(connect.CodeUnauthenticated, errors.New("no token"))
		err.Meta().Set("WWW-Authenticate", "Bearer")
		err.Meta().Set("X-Why", "expired")
		return nil, err
	}))
	for _, contentType := range []string{"application/grpc", "application/grpc-web+proto"} {
		for _, client := range []*http.Client{srv.HTTP1Client(), srv.HTTP2Client()} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+grpcFail, strings.NewReader("\x00\x00\x00\x00\x00"))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", contentType)
			req.Header.Set("Origin", origin)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			fields := res.Trailer
			if contentType != "application/grpc" { // gRPC-Web's error is trailers-only, in the header
				fields = res.Header
			}
			if res.Header.Get("Vary") == "" || res.Header.Get("Access-Control-Allow-Origin") != origin || res.Header.Get("Www-Authenticate") != "Bearer" ||
				res.Trailer.Get("Vary") != "" || res.Trailer.Get("Access-Control-Allow-Origin") != "" ||
				fields.Get("Grpc-Status") != "16" || fields.Get("X-Why") != "expired" {
				t.Errorf("%s over %s: header %v, trailer %v; want Vary, Access-Control-Allow-Origin and WWW-Authenticate in the header alone, grpc-status 16 and X-Why with the status", contentType, res.Proto, res.Header, res.Trailer)
			}
		}
	}
}
