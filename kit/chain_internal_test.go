package kit

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
)

// named records its name in the call's trace on every kind of call.
type named struct {
	name  string
	trace *[]string
}

func (n named) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		*n.trace = append(*n.trace, n.name)
		return next(ctx, req)
	}
}

func (n named) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		*n.trace = append(*n.trace, n.name)
		return next(ctx, spec)
	}
}

func (n named) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		*n.trace = append(*n.trace, n.name)
		return next(ctx, conn)
	}
}

func TestComposedRunsTheFirstOutermost(t *testing.T) {
	t.Parallel()
	var trace []string
	c := composed{named{"a", &trace}, named{"b", &trace}, named{"c", &trace}}
	calls := map[string]func(){
		"unary": func() {
			_, _ = c.WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
				trace = append(trace, "end")
				return nil, nil
			})(t.Context(), connect.NewRequest(&struct{}{}))
		},
		"streaming client": func() {
			c.WrapStreamingClient(func(context.Context, connect.Spec) connect.StreamingClientConn {
				trace = append(trace, "end")
				return nil
			})(t.Context(), connect.Spec{})
		},
		"streaming handler": func() {
			_ = c.WrapStreamingHandler(func(context.Context, connect.StreamingHandlerConn) error {
				trace = append(trace, "end")
				return nil
			})(t.Context(), nil)
		},
	}
	for name, call := range calls {
		trace = nil
		call()
		if got := strings.Join(trace, ","); got != "a,b,c,end" {
			t.Errorf("%s call ran %s, want a,b,c,end", name, got)
		}
	}
}

// BenchmarkComposed measures what composing seven interceptors costs per
// unary call, as connect's chain does it (a client-context check before
// each) and as composed does (one check in all), on a context as deep as
// net/http's and with each interceptor adding a value, as kit's do.
func BenchmarkComposed(b *testing.B) {
	type key int
	var pieces []connect.Interceptor
	for i := range 7 {
		pieces = append(pieces, connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				return next(context.WithValue(ctx, key(i), i), req)
			}
		}))
	}
	ctx := b.Context()
	for i := range 6 {
		ctx = context.WithValue(ctx, key(100+i), i)
	}
	for _, c := range []struct {
		name string
		opt  connect.Option
	}{
		{"connect", connect.WithInterceptors(pieces...)},
		{"composed", connect.WithInterceptors(composed(pieces))},
	} {
		b.Run(c.name, func(b *testing.B) {
			var chain connect.UnaryFunc
			keep := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc { chain = next; return next })
			end := connect.UnaryInterceptorFunc(func(connect.UnaryFunc) connect.UnaryFunc {
				return func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { return nil, nil }
			})
			connect.NewUnaryHandler("/s/m", func(context.Context, *connect.Request[struct{}]) (*connect.Response[struct{}], error) {
				return nil, nil
			}, connect.WithInterceptors(keep), c.opt, connect.WithInterceptors(end))
			req := connect.NewRequest(&struct{}{})
			b.ReportAllocs()
			for b.Loop() {
				_, _ = chain(ctx, req)
			}
		})
	}
}
