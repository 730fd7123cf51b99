package kit_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// seenHeaders lists the headers of h that a test of forwarding looks at,
// sorted, with every value: "K=v1|v2 K2=v".
func seenHeaders(h http.Header) string {
	var out []string
	for k, v := range h {
		if strings.HasPrefix(k, "X-Md-") || k == "X-Tenant" || k == "Authorization" || k == "Cookie" || k == "Cx-Custom" || k == "Connect-Custom" {
			out = append(out, k+"="+strings.Join(v, "|"))
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// headerDump is the last service of the chain: Ping answers the headers
// it got in its text, CountUp in its response header "Seen".
type headerDump struct {
	pingv1connect.UnimplementedPingServiceHandler
	calls atomic.Int64
}

func (d *headerDump) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	d.calls.Add(1)
	return connect.NewResponse(&pingv1.PingResponse{Text: seenHeaders(req.Header())}), nil
}

func (d *headerDump) CountUp(_ context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	d.calls.Add(1)
	stream.ResponseHeader().Set("Seen", seenHeaders(req.Header()))
	return stream.Send(&pingv1.CountUpResponse{Number: 1})
}

// forwardingRelay is the middle service: its Ping calls the next service's
// Ping and CountUp with requests of its own, setting X-Md-Global-Override
// on both (in lower case, as grpc-go's metadata spells it, when lower),
// and answers "unary: … stream: …" with what they saw.
type forwardingRelay struct {
	pingv1connect.UnimplementedPingServiceHandler
	next  pingv1connect.PingServiceClient
	lower bool
	calls atomic.Int64
}

// override sets the relay's own X-Md-Global-Override on h.
func (r *forwardingRelay) override(h http.Header) {
	if r.lower {
		h["x-md-global-override"] = []string{"relay's"}
		return
	}
	h.Set("X-Md-Global-Override", "relay's")
}

func (r *forwardingRelay) Ping(ctx context.Context, _ *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	r.calls.Add(1)
	unary := connect.NewRequest(&pingv1.PingRequest{})
	r.override(unary.Header())
	res, err := r.next.Ping(ctx, unary)
	if err != nil {
		return nil, err
	}
	streamReq := connect.NewRequest(&pingv1.CountUpRequest{Number: 1})
	r.override(streamReq.Header())
	stream, err := r.next.CountUp(ctx, streamReq)
	if err != nil {
		return nil, err
	}
	for stream.Receive() {
	}
	if err := stream.Close(); err != nil {
		return nil, err
	}
	text := "unary: " + res.Msg.GetText() + " stream: " + stream.ResponseHeader().Get("Seen")
	return connect.NewResponse(&pingv1.PingResponse{Text: text}), nil
}

// forwardChain runs the last service, and in front of it the relay,
// forwarding names, which calls it through srv.HTTPClient() with
// srv.ClientOptions() and inner.
func forwardChain(t *testing.T, names []string, inner ...connect.ClientOption) (*kittest.Server, *forwardingRelay, *headerDump) {
	t.Helper()
	dump := &headerDump{}
	last := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(dump, s.HandlerOptions()...))
	})
	relay := &forwardingRelay{}
	front := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		relay.next = pingv1connect.NewPingServiceClient(s.HTTPClient(), last.URL, append(s.ClientOptions(), inner...)...)
		s.Mount(pingv1connect.NewPingServiceHandler(relay, s.HandlerOptions()...))
	}, kit.WithInterceptorOptions(interceptors.WithForwardHeaders(names...)))
	return front, relay, dump
}

// What the last service sees of the edge's headers: the X-Md-Global-* and
// X-Tenant ones, every value, in any case, binary ones included, but for
// the one the relay set itself; not X-Md-Local-*, nor Authorization,
// which no prefix forwards.
const wantForwarded = "X-Md-Global-Blob-Bin=AAEC X-Md-Global-Lower=l X-Md-Global-Override=relay's " +
	"X-Md-Global-Roles=a|b X-Md-Global-Tenant=acme X-Tenant=t1"

// A call's x-md-global-* headers (kit.WithInterceptorOptions with
// interceptors.WithForwardHeaders) go on from the service that gets them
// to the unary and streaming calls its handler makes through
// srv.HTTPClient(), over Connect and gRPC, from connect and grpc-go
// clients at the edge.
func TestForwardHeadersThroughThreeServices(t *testing.T) {
	t.Parallel()
	for _, inner := range []struct {
		name string
		opts []connect.ClientOption
	}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}} {
		t.Run("relay_calls_over_"+inner.name, func(t *testing.T) {
			t.Parallel()
			front, _, _ := forwardChain(t, []string{"x-md-global-*", "X-TENANT"}, inner.opts...)
			for _, edge := range []struct {
				name string
				opts []connect.ClientOption
			}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}} {
				t.Run("edge_"+edge.name, func(t *testing.T) {
					t.Parallel()
					req := connect.NewRequest(&pingv1.PingRequest{})
					h := req.Header()
					h.Set("X-Md-Global-Tenant", "acme")
					h.Add("X-Md-Global-Roles", "a")
					h.Add("X-Md-Global-Roles", "b")
					h["x-md-global-lower"] = []string{"l"} // sent as is, lower case on the wire
					h.Set("X-Md-Global-Override", "edge's")
					h.Set("X-Md-Global-Blob-Bin", connect.EncodeBinaryHeader([]byte{0, 1, 2}))
					h.Set("X-Md-Local-Trace", "not forwarded")
					h.Set("X-Tenant", "t1")
					h.Set("Authorization", "Bearer not-forwarded")
					res, err := newPingClient(front, front.HTTP2Client(), edge.opts...).Ping(t.Context(), req)
					if err != nil {
						t.Fatal(err)
					}
					want := "unary: " + wantForwarded + " stream: " + wantForwarded
					if got := res.Msg.GetText(); got != want {
						t.Errorf("the last service saw\n%s\nwant\n%s", got, want)
					}
				})
			}
			t.Run("edge_grpc-go", func(t *testing.T) {
				t.Parallel()
				md := metadata.Pairs(
					"x-md-global-tenant", "acme",
					"x-md-global-roles", "a", "x-md-global-roles", "b",
					"x-md-global-lower", "l",
					"x-md-global-override", "edge's",
					"x-md-global-blob-bin", string([]byte{0, 1, 2}),
					"x-md-local-trace", "not forwarded",
					"x-tenant", "t1",
					"authorization", "Bearer not-forwarded",
				)
				var res pingv1.PingResponse
				err := grpcConn(t, strings.TrimPrefix(front.URL, "http://")).Invoke(
					metadata.NewOutgoingContext(t.Context(), md), grpcPing, &pingv1.PingRequest{}, &res)
				if err != nil {
					t.Fatal(err)
				}
				want := "unary: " + wantForwarded + " stream: " + wantForwarded
				if got := res.GetText(); got != want {
					t.Errorf("the last service saw\n%s\nwant\n%s", got, want)
				}
			})
		})
	}
}

// A header the handler set on its request under a key not in canonical
// form (h["x-md-global-override"], as grpc-go's metadata spells it) is the
// same header on the wire: it wins over the forwarded one, which does not
// go on beside it (the next service saw both values, in the order of a
// map's iteration).
func TestForwardHeadersHandlerKeyInLowerCase(t *testing.T) {
	t.Parallel()
	front, relay, _ := forwardChain(t, []string{"x-md-global-*"})
	relay.lower = true
	req := connect.NewRequest(&pingv1.PingRequest{})
	req.Header().Set("X-Md-Global-Override", "edge's")
	req.Header().Set("X-Md-Global-Tenant", "acme")
	res, err := newPingClient(front, front.HTTP2Client()).Ping(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := "X-Md-Global-Override=relay's X-Md-Global-Tenant=acme"
	if got := res.Msg.GetText(); got != "unary: "+want+" stream: "+want {
		t.Errorf("the last service saw %q, want %q on both calls", got, want)
	}
}

// A call with more x-md-global-* headers than are forwarded fails with
// InvalidArgument naming the bounds before its handler runs, and the
// server goes on serving.
func TestForwardHeadersOverTheBounds(t *testing.T) {
	t.Parallel()
	front, relay, dump := forwardChain(t, []string{"x-md-global-*"})
	for _, tc := range []struct {
		name string
		set  func(h http.Header)
	}{
		{name: "33 values", set: func(h http.Header) {
			for range 33 {
				h.Add("X-Md-Global-Role", "r")
			}
		}},
		{name: "9 KiB", set: func(h http.Header) { h.Set("X-Md-Global-Blob", strings.Repeat("b", 9<<10)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := connect.NewRequest(&pingv1.PingRequest{})
			tc.set(req.Header())
			_, err := newPingClient(front, front.HTTP2Client()).Ping(t.Context(), req)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument ||
				!strings.Contains(ce.Message(), "at most 32 values of 8192 bytes are forwarded") {
				t.Errorf("err = %v, want invalid_argument naming the bounds", err)
			}
		})
	}
	t.Run("grpc-go", func(t *testing.T) {
		t.Parallel()
		md := metadata.MD{"x-md-global-role": slices.Repeat([]string{"r"}, 33)}
		var res pingv1.PingResponse
		err := grpcConn(t, strings.TrimPrefix(front.URL, "http://")).Invoke(
			metadata.NewOutgoingContext(t.Context(), md), grpcPing, &pingv1.PingRequest{}, &res, grpc.WaitForReady(true))
		if st := status.Convert(err); st.Code() != codes.InvalidArgument {
			t.Errorf("err = %v, want InvalidArgument", err)
		}
	})
	if n := relay.calls.Load() + dump.calls.Load(); n != 0 {
		t.Errorf("%d calls reached a handler", n)
	}
	// At the bounds exactly, the call goes through.
	req := connect.NewRequest(&pingv1.PingRequest{})
	for range 32 {
		req.Header().Add("X-Md-Global-Role", "r")
	}
	if _, err := newPingClient(front, front.HTTP2Client()).Ping(t.Context(), req); err != nil {
		t.Errorf("32 values: %v", err)
	}
}

// A publish from inside a handler carries the call's forwarded headers,
// and the delivery's handler forwards them in turn to the calls it makes.
func TestForwardHeadersThroughPubsub(t *testing.T) {
	t.Parallel()
	dump := &headerDump{}
	last := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(dump, s.HandlerOptions()...))
	})
	bus := mem.New()
	t.Cleanup(func() { _ = bus.Close() })
	seen := make(chan string, 1)
	front := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		next := pingv1connect.NewPingServiceClient(s.HTTPClient(), last.URL, s.ClientOptions()...)
		pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "pings", pubsub.WithClientOptions(s.ClientOptions()...))
		if err != nil {
			t.Fatal(err)
		}
		sub, err := pubsub.NewSubscriber(bus, "pings", "relay", func(ctx context.Context, msg *pingv1.PingRequest) error {
			res, err := next.Ping(ctx, connect.NewRequest(msg))
			if err != nil {
				return err
			}
			seen <- res.Msg.GetText()
			return nil
		}, pubsub.WithHandlerOptions(s.HandlerOptions()...))
		if err != nil {
			t.Fatal(err)
		}
		s.Go(sub.Run)
		s.Mount(pingv1connect.NewPingServiceHandler(publishingPing{pub: pub}, s.HandlerOptions()...))
	}, kit.WithInterceptorOptions(interceptors.WithForwardHeaders("x-md-global-*")))
	req := connect.NewRequest(&pingv1.PingRequest{})
	req.Header().Set("X-Md-Global-Tenant", "acme")
	req.Header().Set("X-Md-Local-Trace", "not forwarded")
	if _, err := newPingClient(front, front.HTTP2Client()).Ping(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-seen:
		if got != "X-Md-Global-Tenant=acme" {
			t.Errorf("the call made by the delivery's handler carried %q, want X-Md-Global-Tenant=acme", got)
		}
	case <-time.After(10 * time.Second): // a hang, not a measure of speed
		t.Fatal("the delivery's handler made no call")
	}
}

// A delivery whose message carries more headers to forward than the
// bounds is dead-lettered at its first attempt, naming them, and its
// handler never runs: InvalidArgument, which no retry can fix.
func TestForwardHeadersDeliveryOverTheBounds(t *testing.T) {
	t.Parallel()
	bus := mem.New()
	t.Cleanup(func() { _ = bus.Close() })
	var handled atomic.Int64
	kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		sub, err := pubsub.NewSubscriber(bus, "pings", "relay", func(context.Context, *pingv1.PingRequest) error {
			handled.Add(1)
			return nil
		}, pubsub.WithHandlerOptions(s.HandlerOptions()...))
		if err != nil {
			t.Fatal(err)
		}
		s.Go(sub.Run)
	}, kit.WithInterceptorOptions(interceptors.WithForwardHeaders("x-md-global-*")))
	// A producer that forwards nothing, and stamps 33 values.
	stamp := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header()["X-Md-Global-Role"] = slices.Repeat([]string{"r"}, 33)
			return next(ctx, req)
		}
	})
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "pings", pubsub.WithClientOptions(connect.WithInterceptors(stamp)))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Text: "over"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // a hang, not a measure of speed
	for {
		var dead []*pubsub.DeadLetter
		for dl, err := range bus.DeadLetters(t.Context(), "pings", "relay") {
			if err != nil {
				t.Fatal(err)
			}
			dead = append(dead, dl)
		}
		if len(dead) > 0 {
			if dl := dead[0]; dl.Attempts != 1 || !strings.Contains(dl.Error, "at most 32 values") {
				t.Errorf("dead letter after %d attempts, error %q; want 1 attempt and the bounds named", dl.Attempts, dl.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the message was not dead-lettered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("the handler ran %d times", n)
	}
}

// publishingPing publishes every Ping's request.
type publishingPing struct {
	pingv1connect.UnimplementedPingServiceHandler
	pub *pubsub.Publisher[pingv1.PingRequest]
}

func (p publishingPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if err := p.pub.Publish(ctx, req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pingv1.PingResponse{}), nil
}

// Credentials go on only when named: a prefix never forwards them, nor
// the protocols' headers ("c*" covers Content-Type, Connect-*, Cookie).
func TestForwardHeadersNamedCredentials(t *testing.T) {
	t.Parallel()
	front, _, _ := forwardChain(t, []string{"x-md-*", "authorization", "c*"})
	req := connect.NewRequest(&pingv1.PingRequest{})
	req.Header().Set("Authorization", "Bearer token")
	req.Header().Set("Cookie", "session=1")
	req.Header().Set("Cx-Custom", "c")
	req.Header().Set("Connect-Custom", "not forwarded")
	req.Header().Set("X-Md-Global-Override", "edge's")
	res, err := newPingClient(front, front.HTTP2Client()).Ping(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := "Authorization=Bearer token Cx-Custom=c X-Md-Global-Override=relay's"
	if got := res.Msg.GetText(); got != "unary: "+want+" stream: "+want {
		t.Errorf("the last service saw %q, want %q on both calls", got, want)
	}
}

// A name that cannot be forwarded fails kit.New, naming it.
func TestForwardHeadersRefusesNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, want string }{
		{"*", `"*" would forward every header`},
		{"grpc-*", `"grpc-*" is not forwarded: the protocols set Grpc-* headers`},
		{"content-type", `"content-type" is not forwarded: the protocols set it`},
		{"connection", `"connection" is not forwarded: it is a hop-by-hop header`},
		{"traceparent", `"traceparent" is not forwarded: the Tracing interceptor forwards it`},
		{"x-request-id", `"x-request-id" is not forwarded: the RequestID interceptor forwards it`},
		{"x tenant", `"x tenant" is not a header name`},
		{"x:md-*", `"x:md-*" is not a header name prefix`},
		{"x-*-tenant", `"x-*-tenant": only a final "*" matches`},
		{"x-md-**", `"x-md-**": only a final "*" matches`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
				kit.WithInterceptorOptions(interceptors.WithForwardHeaders("x-md-global-*", tc.name)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("kit.New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
