package interceptors_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// recorder is an interceptor that records the procedures of the calls it
// sees, in each of its three Wrap methods.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) add(kind, procedure string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, kind+" "+procedure)
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func (r *recorder) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		r.add("unary", req.Spec().Procedure)
		return next(ctx, req)
	}
}

func (r *recorder) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		r.add("stream", spec.Procedure)
		return next(ctx, spec)
	}
}

func (r *recorder) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		r.add("stream", conn.Spec().Procedure)
		return next(ctx, conn)
	}
}

// A rate limit given through ForProcedures refuses the calls of the one
// method named and none of the others, unary or streaming.
func TestForProceduresLimitsOneMethod(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			url := limitedServer(t, interceptors.ForProcedures(interceptors.RateLimit(slowly, 1), pingv1connect.PingServicePingProcedure))
			client := pingv1connect.NewPingServiceClient(httpClient(t, false), url, p.opts...)
			ping := func() error {
				_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
				return err
			}
			if err := ping(); err != nil {
				t.Fatalf("first Ping: %v", err)
			}
			if err := ping(); codeOf(err) != connect.CodeResourceExhausted {
				t.Fatalf("second Ping: %v; want ResourceExhausted", err)
			}
			for i := range 3 {
				if _, err := client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{})); codeOf(err) == connect.CodeResourceExhausted {
					t.Fatalf("Fail call %d refused by the limit of Ping: %v", i, err)
				}
				if err := countUp(t, client); err != nil {
					t.Fatalf("CountUp %d: %v", i, err)
				}
			}
		})
	}
}

// ForProcedures applies its interceptor on both sides, to streams too, and
// takes a service by the prefix of its procedures or a method by its whole
// name, which does not name the methods it is a prefix of.
func TestForProceduresMatchesNamesOnBothSides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		names []string
		want  []string // the calls the recorder sees, client and server alike
	}{
		{name: "method", names: []string{pingv1connect.PingServicePingProcedure},
			want: []string{"unary " + pingv1connect.PingServicePingProcedure}},
		{name: "method prefix is no method", names: []string{"/connectkit.ping.v1.PingService/Coun"},
			want: nil},
		{name: "streaming method", names: []string{pingv1connect.PingServiceCountUpProcedure},
			want: []string{"stream " + pingv1connect.PingServiceCountUpProcedure}},
		{name: "service", names: []string{"/" + pingv1connect.PingServiceName + "/"},
			want: []string{"unary " + pingv1connect.PingServicePingProcedure, "stream " + pingv1connect.PingServiceCountUpProcedure}},
		{name: "other service", names: []string{"/acme.v1.Orders/"}, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var server, client recorder
			url := limitedServer(t, interceptors.ForProcedures(&server, tc.names...))
			c := pingv1connect.NewPingServiceClient(httpClient(t, false), url,
				connect.WithInterceptors(interceptors.ForProcedures(&client, tc.names...)))
			if _, err := c.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatal(err)
			}
			if err := countUp(t, c); err != nil {
				t.Fatal(err)
			}
			if got := server.calls(); !slices.Equal(got, tc.want) {
				t.Errorf("server side saw %q; want %q", got, tc.want)
			}
			if got := client.calls(); !slices.Equal(got, tc.want) {
				t.Errorf("client side saw %q; want %q", got, tc.want)
			}
		})
	}
}

func TestForProceduresPanicsOnBadNames(t *testing.T) {
	t.Parallel()
	for _, names := range [][]string{nil, {"connectkit.ping.v1.PingService/Ping"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ForProcedures(%q) did not panic", names)
				}
			}()
			interceptors.ForProcedures(&recorder{}, names...)
		}()
	}
}

// BenchmarkForProcedures measures what the wrapper costs a call of a
// procedure it does not name (connect.NewRequest's has none), which it
// looks for among a service prefix and a method, as a typical use has.
func BenchmarkForProcedures(b *testing.B) {
	ic := interceptors.ForProcedures(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc { return next }),
		"/acme.v1.Admin/", pingv1connect.PingServicePingProcedure)
	call := ic.WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { return nil, nil })
	req := connect.NewRequest(&pingv1.PingRequest{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = call(ctx, req)
	}
}
