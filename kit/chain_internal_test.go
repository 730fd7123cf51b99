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
