package interceptors_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// TestRecoveryInChain checks, for each stream type, that a panic is one
// Internal error for its call, logged once with its stack, and that the
// server serves the next call.
func TestRecoveryInChain(t *testing.T) {
	t.Parallel()
	for _, tc := range streamCases {
		if !tc.panics {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, serverConfig{})
			client := s.pingClient(t)
			res := runStream(t, client, tc.procedure, tc.numbers)
			var ce *connect.Error
			if connect.CodeOf(res.err) != connect.CodeInternal || !errors.As(res.err, &ce) || ce.Message() != "internal error" {
				t.Fatalf("err = %v, want internal: internal error", res.err)
			}
			if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
				t.Fatalf("the call after the panic: %v", err)
			}
			s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "code": "ok"})
			if n := strings.Count(s.server.logs.dump(), `"stack":`); n != 1 {
				t.Errorf("the stack is logged %d times, want once:\n%s", n, s.server.logs.dump())
			}
			assertPanicFields(t, s.server.logs.waitLine(t, map[string]any{"code": "internal"}), true)
		})
	}
}

// TestRecoveryAlone checks that Recovery logs a panic itself when no
// Logging interceptor wraps it.
func TestRecoveryAlone(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s := newTestServer(t, serverConfig{interceptors: func(*observed) []connect.Interceptor {
		return []connect.Interceptor{interceptors.RequestID(), interceptors.Recovery(slog.New(slog.NewJSONHandler(logs, nil)))}
	}})
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), s.URL)
	_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: "panic"}))
	if connect.CodeOf(err) != connect.CodeInternal || strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want internal, without the panic value", err)
	}
	line := logs.waitLine(t, map[string]any{"msg": "panic"})
	assertPanicFields(t, line, true)
	if line["level"] != "ERROR" || line["procedure"] != pingv1connect.PingServicePingProcedure || line["request_id"] != responseRequestID(t, nil, err) {
		t.Errorf("panic line = %v", line)
	}
}

// TestRecoveryAbortHandler checks that http.ErrAbortHandler goes on to
// net/http, which aborts the response, and that the server keeps serving.
func TestRecoveryAbortHandler(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s := newTestServer(t, serverConfig{interceptors: func(*observed) []connect.Interceptor {
		return []connect.Interceptor{interceptors.Recovery(slog.New(slog.NewJSONHandler(logs, nil)))}
	}})
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), s.URL)
	_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: "abort"}))
	if err == nil || strings.Contains(err.Error(), "internal error") {
		t.Fatalf("err = %v, want the aborted response's error", err)
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Fatalf("the call after the abort: %v", err)
	}
	if logs.dump() != "" {
		t.Errorf("Recovery logged an abort:\n%s", logs.dump())
	}
}

// TestRecoveryClient checks that Recovery leaves a client's panics alone.
func TestRecoveryClient(t *testing.T) {
	t.Parallel()
	panicking := connect.UnaryInterceptorFunc(func(connect.UnaryFunc) connect.UnaryFunc {
		return func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { panic("client bug") }
	})
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), "http://127.0.0.1:1",
		connect.WithInterceptors(interceptors.Recovery(nil), panicking))
	defer func() {
		if p := recover(); p != "client bug" {
			t.Errorf("recovered %v, want the client's panic", p)
		}
	}()
	_, _ = client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
	t.Error("the panic was swallowed")
}
