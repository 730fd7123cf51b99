package interceptors

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/connctx"
)

// unaryChain returns handler wrapped by chain, the first outermost, as
// connect.WithInterceptors chains them.
func unaryChain(handler connect.UnaryFunc, chain ...connect.Interceptor) connect.UnaryFunc {
	for i := len(chain) - 1; i >= 0; i-- {
		handler = chain[i].WrapUnary(handler)
	}
	return handler
}

// callContexts is what a handler saw of its context.
type callContexts struct {
	requestID string
	log       *logContext // ctx.Value(logKey{})
}

func recordingHandler(seen *[]callContexts) connect.UnaryFunc {
	return func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		lc, _ := ctx.Value(logKey{}).(*logContext)
		*seen = append(*seen, callContexts{requestID: RequestIDFrom(ctx), log: lc})
		return connect.NewResponse(&struct{}{}), nil
	}
}

// twice calls the rest of the chain twice with the same context, as a
// server-side retry would.
type twice struct{ connect.Interceptor }

func (twice) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if _, err := next(ctx, req); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// TestServedContextAllocation checks that Default's RequestID allocates
// Logging's context with its own when Logging comes right after it: one
// allocation fewer a call. Not parallel: testing.AllocsPerRun.
func TestServedContextAllocation(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	req := connect.NewRequest(&struct{}{})
	req.Header().Set(RequestIDHeader, "abc")
	ok := func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { return nil, nil }
	allocs := func(rid connect.Interceptor) float64 {
		call := unaryChain(ok, rid, Logging(logger))
		return testing.AllocsPerRun(100, func() { _, _ = call(context.Background(), req) })
	}
	chain, err := Default(logger, nil, WithoutTracing(), WithoutMetrics())
	if err != nil {
		t.Fatal(err)
	}
	separate, shared := allocs(RequestID()), allocs(chain.RequestID)
	if shared != separate-1 {
		t.Errorf("RequestID then Logging: %v allocations a call with Default's RequestID, %v with RequestID(); want one fewer", shared, separate)
	}
}

// TestServedContextSharedWithLogging checks that in every order each
// piece's context is what it was with Default's RequestID: its spare is
// used by at most one Logging, and seen by no handler as Logging's unless
// a Logging took it.
func TestServedContextSharedWithLogging(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	req := connect.NewRequest(&struct{}{})
	req.Header().Set(RequestIDHeader, "abc")

	for _, tc := range []struct {
		name  string
		chain func(rid, log connect.Interceptor) []connect.Interceptor
		calls int
		// takes: whether the handler's Logging context is the spare of
		// RequestID's context, for each call.
		takes []bool
		noLog bool
	}{
		{name: "RequestID, Logging", chain: func(rid, log connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{rid, log}
		}, calls: 1, takes: []bool{true}},
		{name: "Logging, RequestID", chain: func(rid, log connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{log, rid}
		}, calls: 1, takes: []bool{false}},
		{name: "RequestID alone", chain: func(rid, _ connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{rid}
		}, calls: 1, noLog: true},
		{name: "RequestID, a retry, Logging", chain: func(rid, log connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{rid, twice{}, log}
		}, calls: 2, takes: []bool{true, false}},
		{name: "RequestID, Logging, Logging", chain: func(rid, log connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{rid, log, Logging(logger)}
		}, calls: 1, takes: []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var seen []callContexts
			rid := requestIDBeforeLogging()
			var ridCtx *servedContext
			spy := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					ridCtx, _ = ctx.(*servedContext)
					return next(ctx, req)
				}
			})
			chain := tc.chain(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return rid.WrapUnary(spy(next))
			}), Logging(logger))
			if _, err := unaryChain(recordingHandler(&seen), chain...)(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if ridCtx == nil {
				t.Fatal("Default's RequestID passed on no servedContext")
			}
			if len(seen) != tc.calls {
				t.Fatalf("handler called %d times, want %d", len(seen), tc.calls)
			}
			for i, s := range seen {
				if s.requestID != "abc" {
					t.Errorf("call %d: RequestIDFrom = %q, want abc", i, s.requestID)
				}
				if tc.noLog {
					if s.log != nil {
						t.Errorf("call %d: a Logging context without Logging in the chain", i)
					}
					continue
				}
				if s.log == nil || s.log.base == nil {
					t.Fatalf("call %d: Logging's context = %+v, want one with Logging's logger", i, s.log)
				}
				if took := s.log == &ridCtx.log; took != tc.takes[i] {
					t.Errorf("call %d: Logging's context is RequestID's spare: %v, want %v", i, took, tc.takes[i])
				}
			}
			if tc.calls == 2 && seen[0].log == seen[1].log {
				t.Error("both calls got the same Logging context")
			}
		})
	}
}

// stateLookups counts the lookups through it that find the connection's
// State.
type stateLookups struct {
	context.Context
	found int
}

func (c *stateLookups) Value(key any) any {
	v := c.Context.Value(key)
	if _, ok := v.(*connctx.State); ok {
		c.found++
	}
	return v
}

// TestLineHTTPVersionFromRequestID checks that a call's line gets its
// HTTP version from the connection's State that RequestID looked up,
// without a second lookup, where Logging's context is under RequestID's,
// and with one in any other order.
func TestLineHTTPVersionFromRequestID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		chain   func(rid, log connect.Interceptor) []connect.Interceptor
		lookups int
	}{
		{name: "RequestID, Logging", chain: func(rid, log connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{rid, log}
		}, lookups: 1},
		{name: "Logging, RequestID", chain: func(rid, log connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{log, rid}
		}, lookups: 2},
		{name: "RequestID, a retry, Logging", chain: func(rid, log connect.Interceptor) []connect.Interceptor {
			return []connect.Interceptor{rid, twice{}, log}
		}, lookups: 1}, // the retry's Logging context, its own, is under RequestID's
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, nil))
			conn := connctx.NewContext(context.Background())
			connctx.FromContext(conn).Version.Store(11)
			ctx := &stateLookups{Context: conn}
			req := connect.NewRequest(&struct{}{})
			ok := func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
				return connect.NewResponse(&struct{}{}), nil
			}
			if _, err := unaryChain(ok, tc.chain(requestIDBeforeLogging(), Logging(logger))...)(ctx, req); err != nil {
				t.Fatal(err)
			}
			if ctx.found != tc.lookups {
				t.Errorf("the connection's State looked up %d times; want %d", ctx.found, tc.lookups)
			}
			if got := strings.Count(buf.String(), `"http":"HTTP/1.1"`); got != strings.Count(buf.String(), "\n") || got == 0 {
				t.Errorf("lines %s; want each with http HTTP/1.1", buf.String())
			}
		})
	}
}
