package interceptors_test

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// unaryCases are calls of each outcome.
var unaryCases = []struct {
	name      string
	procedure string
	call      func(context.Context, pingv1connect.PingServiceClient) (connect.AnyResponse, error)
	level     string
	code      string
	panics    bool
}{
	{
		name: "ok", procedure: pingv1connect.PingServicePingProcedure, level: "INFO", code: "ok",
		call: func(ctx context.Context, c pingv1connect.PingServiceClient) (connect.AnyResponse, error) {
			return c.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 7}))
		},
	},
	{
		name: "caller error", procedure: pingv1connect.PingServiceFailProcedure, level: "WARN", code: "not_found",
		call: func(ctx context.Context, c pingv1connect.PingServiceClient) (connect.AnyResponse, error) {
			return c.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)}))
		},
	},
	{
		name: "server error", procedure: pingv1connect.PingServiceFailProcedure, level: "ERROR", code: "unavailable",
		call: func(ctx context.Context, c pingv1connect.PingServiceClient) (connect.AnyResponse, error) {
			return c.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeUnavailable)}))
		},
	},
	{
		name: "invalid", procedure: pingv1connect.PingServicePingProcedure, level: "WARN", code: "invalid_argument",
		call: func(ctx context.Context, c pingv1connect.PingServiceClient) (connect.AnyResponse, error) {
			return c.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: -1}))
		},
	},
	{
		name: "panic", procedure: pingv1connect.PingServicePingProcedure, level: "ERROR", code: "internal", panics: true,
		call: func(ctx context.Context, c pingv1connect.PingServiceClient) (connect.AnyResponse, error) {
			return c.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Text: "panic"}))
		},
	},
}

func TestLoggingUnary(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		for _, tc := range unaryCases {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s := newTestServer(t, serverConfig{})
				resp, err := tc.call(t.Context(), s.pingClient(t, proto.opts...))
				requestID := responseRequestID(t, resp, err)

				serverSpan := onlySpan(t, s.server.spans)
				server := s.server.logs.waitLine(t, map[string]any{"msg": "rpc"})
				assertRPCLine(t, server, map[string]any{
					"level": tc.level, "kind": "server", "procedure": tc.procedure, "stream": "unary",
					"protocol": proto.name, "http": "HTTP/2.0", "code": tc.code, "request_id": requestID,
					"trace_id": serverSpan.SpanContext.TraceID().String(),
					"span_id":  serverSpan.SpanContext.SpanID().String(),
				})
				if !strings.HasPrefix(server["peer"].(string), "127.0.0.1:") {
					t.Errorf("peer = %v, want 127.0.0.1:port", server["peer"])
				}

				clientSpan := onlySpan(t, s.client.spans)
				client := s.client.logs.waitLine(t, map[string]any{"msg": "rpc"})
				assertRPCLine(t, client, map[string]any{
					"level": tc.level, "kind": "client", "procedure": tc.procedure, "stream": "unary",
					"protocol": proto.name, "peer": hostOf(t, s.URL), "code": tc.code, "request_id": requestID,
					"trace_id": serverSpan.SpanContext.TraceID().String(),
					"span_id":  clientSpan.SpanContext.SpanID().String(),
				})
				if _, ok := client["http"]; ok {
					t.Errorf("client line has http = %v; connect does not tell clients", client["http"])
				}
				if tc.code == "ok" {
					for _, line := range []map[string]any{server, client} {
						if _, ok := line["error"]; ok {
							t.Errorf("%s line of a success has an error: %v", line["kind"], line["error"])
						}
					}
				} else if !strings.Contains(server["error"].(string), tc.code) {
					t.Errorf("server error = %q, want it to mention %s", server["error"], tc.code)
				}
				assertPanicFields(t, server, tc.panics)
				assertPanicFields(t, client, false)
			})
		}
	}
}

// streamCase runs a streaming method, succeeding or panicking.
type streamCase struct {
	name      string
	procedure string
	stream    string
	numbers   []int64 // sent by the client (CountUp: its one request)
	// messages the server receives and sends
	received, sent float64
	panics         bool
}

// streamCases run each streaming method, succeeding or panicking.
var streamCases = []streamCase{
	{name: "sum", procedure: pingv1connect.PingServiceSumProcedure, stream: "client_stream", numbers: []int64{1, 2, 3}, received: 3, sent: 1},
	{name: "sum panic", procedure: pingv1connect.PingServiceSumProcedure, stream: "client_stream", numbers: []int64{1, panicNumber}, received: 2, sent: 0, panics: true},
	{name: "countup", procedure: pingv1connect.PingServiceCountUpProcedure, stream: "server_stream", numbers: []int64{3}, received: 1, sent: 3},
	{name: "countup panic", procedure: pingv1connect.PingServiceCountUpProcedure, stream: "server_stream", numbers: []int64{panicNumber}, received: 1, sent: 1, panics: true},
	{name: "cumsum", procedure: pingv1connect.PingServiceCumSumProcedure, stream: "bidi_stream", numbers: []int64{1, 2, 3}, received: 3, sent: 3},
	{name: "cumsum panic", procedure: pingv1connect.PingServiceCumSumProcedure, stream: "bidi_stream", numbers: []int64{1, panicNumber}, received: 2, sent: 1, panics: true},
}

func TestLoggingStreams(t *testing.T) {
	t.Parallel()
	eachStream(t, func(t *testing.T, proto protocol, tc streamCase) {
		s := newTestServer(t, serverConfig{})
		res := runStream(t, s.pingClient(t, proto.opts...), tc.procedure, tc.numbers)
		level, code := "INFO", "ok"
		if tc.panics {
			level, code = "ERROR", "internal"
			if connect.CodeOf(res.err) != connect.CodeInternal {
				t.Fatalf("err = %v, want internal", res.err)
			}
		} else if res.err != nil {
			t.Fatalf("stream: %v", res.err)
		}

		serverSpan := onlySpan(t, s.server.spans)
		server := s.server.logs.waitLine(t, map[string]any{"msg": "rpc"})
		assertRPCLine(t, server, map[string]any{
			"level": level, "kind": "server", "procedure": tc.procedure, "stream": tc.stream,
			"protocol": proto.name, "http": "HTTP/2.0", "code": code,
			"received": tc.received, "sent": tc.sent, "request_id": res.requestID,
			"trace_id": serverSpan.SpanContext.TraceID().String(),
			"span_id":  serverSpan.SpanContext.SpanID().String(),
		})
		assertPanicFields(t, server, tc.panics)

		client := s.client.logs.waitLine(t, map[string]any{"msg": "rpc"})
		assertRPCLine(t, client, map[string]any{
			"level": level, "kind": "client", "procedure": tc.procedure, "stream": tc.stream,
			"protocol": proto.name, "code": code, "request_id": res.requestID,
			"trace_id": serverSpan.SpanContext.TraceID().String(),
			"received": float64(res.received), "sent": float64(res.sent),
		})
	})
}

// TestHTTPVersion checks the http field over both HTTP versions, with and
// without interceptors.ConnContext on the server, and that a server not
// wrapped by interceptors.HTTPVersion logs no http field at all.
func TestHTTPVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		http1       bool
		connContext bool
		unwrapped   bool   // no interceptors.HTTPVersion
		want        string // "": no http field
	}{
		{name: "h2c", want: "HTTP/2.0", connContext: true},
		{name: "http1", http1: true, want: "HTTP/1.1", connContext: true},
		{name: "h2c without ConnContext", want: "HTTP/2.0"},
		{name: "http1 without ConnContext", http1: true, want: "HTTP/1.1"},
		{name: "h2c without HTTPVersion", connContext: true, unwrapped: true},
		{name: "http1 without either", http1: true, unwrapped: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newObserved(t, slog.LevelInfo)
			mux := http.NewServeMux()
			mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(o.chain.Server()...)))
			var connContext func(context.Context, net.Conn) context.Context
			if tc.connContext {
				connContext = interceptors.ConnContext
			}
			var h http.Handler = mux
			if !tc.unwrapped {
				h = interceptors.HTTPVersion(mux)
			}
			client := pingv1connect.NewPingServiceClient(httpClient(t, tc.http1), serveWith(t, h, connContext))
			for range 2 { // two calls on one connection
				if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, func() bool { return len(o.logs.matching(t, map[string]any{"msg": "rpc"})) == 2 },
				func() string { return "two lines:\n" + o.logs.dump() })
			var want any = tc.want
			if tc.want == "" {
				want = nil // absent, not empty
			}
			if lines := o.logs.matching(t, map[string]any{"msg": "rpc", "http": want}); len(lines) != 2 {
				t.Errorf("want http %q on both lines:\n%s", tc.want, o.logs.dump())
			}
		})
	}
}

func TestLoggerFrom(t *testing.T) {
	t.Parallel()
	t.Run("in a handler", func(t *testing.T) {
		t.Parallel()
		s := newTestServer(t, serverConfig{})
		resp, err := s.pingClient(t).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: "log"}))
		if err != nil {
			t.Fatal(err)
		}
		span := onlySpan(t, s.server.spans)
		line := s.server.logs.waitLine(t, map[string]any{"msg": "handler line"})
		assertRPCLine(t, line, map[string]any{
			"level": "INFO", "procedure": pingv1connect.PingServicePingProcedure,
			"request_id": resp.Header().Get(interceptors.RequestIDHeader),
			"trace_id":   span.SpanContext.TraceID().String(),
			"span_id":    span.SpanContext.SpanID().String(),
		})
	})
	t.Run("outside a call", func(t *testing.T) {
		t.Parallel()
		logger := interceptors.LoggerFrom(t.Context())
		if logger == nil || logger.Enabled(t.Context(), slog.LevelError) {
			t.Errorf("LoggerFrom outside a call = %v, want a logger that discards", logger)
		}
	})
}

func TestLoggingPayloads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		level slog.Level
		opts  []interceptors.Option
		want  int
	}{
		{name: "enabled at debug", level: slog.LevelDebug, opts: []interceptors.Option{interceptors.WithPayloads()}, want: 2},
		{name: "not enabled", level: slog.LevelDebug, want: 0},
		{name: "enabled above debug", level: slog.LevelInfo, opts: []interceptors.Option{interceptors.WithPayloads()}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, serverConfig{level: tc.level, serverChainOpts: tc.opts})
			req := &pingv1.PingRequest{Number: 5, Text: "hello", Secret: "hunter2"}
			if _, err := s.pingClient(t).Ping(t.Context(), connect.NewRequest(req)); err != nil {
				t.Fatal(err)
			}
			s.server.logs.waitLine(t, map[string]any{"msg": "rpc"})
			if strings.Contains(s.server.logs.dump(), "hunter2") {
				t.Errorf("a debug_redact field was logged:\n%s", s.server.logs.dump())
			}
			lines := s.server.logs.matching(t, map[string]any{"msg": "payload"})
			if len(lines) != tc.want {
				t.Fatalf("%d payload lines, want %d:\n%s", len(lines), tc.want, s.server.logs.dump())
			}
			for _, line := range lines {
				p, ok := line["payload"].(map[string]any)
				if !ok || p["number"] != "5" || p["text"] != "hello" {
					t.Errorf("payload = %v, want number and text", line["payload"])
				}
				if _, ok := p["secret"]; ok {
					t.Errorf("payload has the secret: %v", p)
				}
			}
		})
	}
}

// assertRPCLine checks the fields of a log line and that it has a duration.
func assertRPCLine(t *testing.T, line, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v (%T), want %v (%T) in %v", k, line[k], line[k], v, v, line)
		}
	}
	if want["kind"] != nil {
		if d, ok := line["duration"].(float64); !ok || d <= 0 {
			t.Errorf("duration = %v, want a positive number", line["duration"])
		}
	}
}

func assertPanicFields(t *testing.T, line map[string]any, want bool) {
	t.Helper()
	stack, _ := line["stack"].(string)
	if !want {
		if line["panic"] != nil || stack != "" {
			t.Errorf("line has panic fields: %v", line)
		}
		return
	}
	if line["panic"] != "boom" || !strings.Contains(stack, "interceptors_test.") || strings.Contains(stack, "recovered(") {
		t.Errorf("panic = %v, stack = %q; want boom and the handler's frames", line["panic"], stack)
	}
}

// responseRequestID returns the X-Request-Id the server answered with.
func responseRequestID(t *testing.T, resp connect.AnyResponse, err error) string {
	t.Helper()
	var id string
	if err != nil {
		var ce *connect.Error
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want a *connect.Error", err)
		}
		id = ce.Meta().Get(interceptors.RequestIDHeader)
	} else {
		id = resp.Header().Get(interceptors.RequestIDHeader)
	}
	if id == "" {
		t.Fatalf("no %s in the response (err %v)", interceptors.RequestIDHeader, err)
	}
	return id
}

// onlySpan waits for the one span of exp.
func onlySpan(t *testing.T, exp *tracetest.InMemoryExporter) tracetest.SpanStub {
	t.Helper()
	waitFor(t, func() bool { return len(exp.GetSpans()) > 0 }, func() string { return "a span" })
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1: %v", len(spans), spanNames(spans))
	}
	return spans[0]
}

func spanNames(spans tracetest.SpanStubs) []string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name
	}
	return names
}

func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestLoggingQuietProcedures(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, serverConfig{
		level:           slog.LevelDebug,
		serverChainOpts: []interceptors.Option{interceptors.WithQuietProcedures("/connectkit.ping.v1.PingService/Ping")},
	})
	client := s.pingClient(t)
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatal(err)
	}
	s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "level": "DEBUG", "procedure": pingv1connect.PingServicePingProcedure, "code": "ok"})

	// Failures of a quiet procedure are logged as usual.
	_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("Ping(-1) = %v, want InvalidArgument", err)
	}
	s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "level": "WARN", "procedure": pingv1connect.PingServicePingProcedure, "code": "invalid_argument"})

	// Other procedures are not quiet.
	if _, err := client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)})); err == nil {
		t.Fatal("Fail succeeded")
	}
	s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "level": "WARN", "procedure": pingv1connect.PingServiceFailProcedure})
}

// A quiet procedure's stream that ends with DeadlineExceeded logs at debug
// only when the deadline that passed is the caller's (buf curl --timeout
// on reflection's stream), the one its context carried into Logging. One
// set further in, as kit's KIT_STREAM_TIMEOUT is, or a DeadlineExceeded of
// the handler's own (a dependency that timed out) is the server's, and
// logs at error as for any other procedure: a health Watch that the server
// cuts so turns grpc-go's client-side health checking TRANSIENT_FAILURE.
// Likewise one that ends with Canceled logs at debug only when the caller
// cancelled it (its context, Logging's, is done), and at warn when the
// handler returns a Canceled of its own.
func TestLoggingQuietStreamEnd(t *testing.T) {
	t.Parallel()
	const procedure = "/grpc.health.v1.Health/Watch"
	for _, tc := range []struct {
		name      string
		deadline  time.Duration // of the caller's context; 0: none
		cancelled bool          // the caller's context, cancelled before the call
		handler   func(ctx context.Context) error
		code      string // deadline_exceeded if empty
		level     string
	}{
		{name: "caller's deadline passed", deadline: time.Millisecond, level: "DEBUG", handler: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}},
		{name: "deadline set inside the chain", level: "ERROR", handler: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, time.Millisecond)
			defer cancel()
			<-ctx.Done()
			return ctx.Err()
		}},
		{name: "handler's own DeadlineExceeded", deadline: time.Hour, level: "ERROR", handler: func(context.Context) error {
			return connect.NewError(connect.CodeDeadlineExceeded, errors.New("the database did not answer"))
		}},
		{name: "caller cancelled", cancelled: true, code: "canceled", level: "DEBUG", handler: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}},
		{name: "context cancelled inside the chain", code: "canceled", level: "WARN", handler: func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx.Err()
		}},
		{name: "handler's own Canceled", code: "canceled", level: "WARN", handler: func(context.Context) error {
			return connect.NewError(connect.CodeCanceled, errors.New("the job was withdrawn"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			logging := interceptors.Logging(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				interceptors.WithQuietProcedures("/grpc.health.v1.Health/"))
			handler := logging.WrapStreamingHandler(func(ctx context.Context, _ connect.StreamingHandlerConn) error {
				return tc.handler(ctx)
			})
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			if tc.cancelled {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			code := cmp.Or(tc.code, "deadline_exceeded")
			conn := &streamConn{spec: connect.Spec{Procedure: procedure, StreamType: connect.StreamTypeServer}}
			_ = handler(ctx, conn) // tc.handler's error, which the line shows
			lines := logs.matching(t, map[string]any{"msg": "rpc", "procedure": procedure, "code": code})
			if len(lines) != 1 || lines[0]["level"] != tc.level {
				t.Errorf("lines %v, want one at %s", lines, tc.level)
			}
		})
	}
}

// streamConn is a server stream of spec that sends and receives nothing.
type streamConn struct {
	connect.StreamingHandlerConn
	spec connect.Spec
}

func (c *streamConn) Spec() connect.Spec { return c.spec }
func (c *streamConn) Peer() connect.Peer {
	return connect.Peer{Addr: "127.0.0.1:1", Protocol: connect.ProtocolGRPC}
}
