package interceptors_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
)

// spanProbe records the span context of the context it is given, which it
// passes on unchanged, so that the interceptor after it gets the same one.
type spanProbe struct {
	mu sync.Mutex
	sc trace.SpanContext
}

// interceptor returns the probe as a unary interceptor.
func (p *spanProbe) interceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			p.mu.Lock()
			p.sc = trace.SpanContextFromContext(ctx)
			p.mu.Unlock()
			return next(ctx, req)
		}
	})
}

// get returns the span context it saw last.
func (p *spanProbe) get() trace.SpanContext {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sc
}

// userSpan starts a span of tracer around each unary call, as a user's
// interceptor may.
func userSpan(tracer trace.Tracer) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			ctx, span := tracer.Start(ctx, "user")
			defer span.End()
			return next(ctx, req)
		}
	})
}

// TestLineSpanInUserChains: in chains of a user's order, a served call's
// rpc line carries the trace and span ids of the span in Logging's
// context whenever there is one, and none otherwise, whether Metrics runs
// right inside Logging (and so tells it that its context holds no span),
// further in, or not at all.
func TestLineSpanInUserChains(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		chain func(logging, metrics, tracing, user connect.Interceptor, probe connect.Interceptor) []connect.Interceptor
	}{
		{name: "Tracing, Logging, Metrics", chain: func(l, m, tr, _ connect.Interceptor, p connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{tr, l, p, m}
		}},
		{name: "a user's span between Logging and Metrics", chain: func(l, m, tr, u connect.Interceptor, p connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{tr, l, p, u, m}
		}},
		{name: "a user's span without Tracing, between Logging and Metrics", chain: func(l, m, _, u connect.Interceptor, p connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{l, p, u, m}
		}},
		{name: "a user's span around Logging", chain: func(l, m, _, u connect.Interceptor, p connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{u, l, p, m}
		}},
		{name: "Tracing inside Metrics", chain: func(l, m, tr, _ connect.Interceptor, p connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{l, p, m, tr}
		}},
		{name: "Logging alone, inside Tracing", chain: func(l, _, tr, _ connect.Interceptor, p connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{tr, l, p}
		}},
		{name: "Logging alone", chain: func(l, _, _, _ connect.Interceptor, p connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{l, p}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			probe := &spanProbe{}
			s := newTestServer(t, serverConfig{interceptors: func(o *observed) []connect.Interceptor {
				logger := slog.New(slog.NewJSONHandler(o.logs, nil))
				metrics, err := interceptors.Metrics(prometheus.NewRegistry())
				if err != nil {
					t.Fatal(err)
				}
				tracing, err := interceptors.Tracing(interceptors.WithTracerProvider(o.tp))
				if err != nil {
					t.Fatal(err)
				}
				return tc.chain(interceptors.Logging(logger), metrics, tracing, userSpan(o.tp.Tracer("user")), probe.interceptor())
			}})
			for _, proto := range protocols {
				if _, err := s.pingClient(t, proto.opts...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
					t.Fatalf("%s: %v", proto.name, err)
				}
				line := s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "kind": "server", "protocol": proto.name})
				sc := probe.get()
				if !sc.IsValid() {
					if _, ok := line["trace_id"]; ok {
						t.Errorf("%s: line %v has a trace_id, Logging's context no span", proto.name, line)
					}
					continue
				}
				if line["trace_id"] != sc.TraceID().String() || line["span_id"] != sc.SpanID().String() {
					t.Errorf("%s: line's trace_id, span_id = %v, %v; want Logging's span %s, %s", proto.name, line["trace_id"], line["span_id"], sc.TraceID(), sc.SpanID())
				}
			}
		})
	}
}
