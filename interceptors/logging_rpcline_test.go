package interceptors_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/logline"
)

// lineHandler is a handler with logline.Handler's method, as kit's is: it
// keeps the RPC lines it is handed and the records it handles, and takes
// the lines or, with refuse, turns them down.
type lineHandler struct {
	*lineLog
	attrs []slog.Attr // of WithAttrs
}

type lineLog struct {
	refuse  bool
	mu      sync.Mutex
	rpcs    []logline.RPC
	records [][]slog.Attr // each record's attributes, the handler's first
}

func (h *lineHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, attrs)
	return nil
}

func (h *lineHandler) HandleRPC(l logline.RPC) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rpcs = append(h.rpcs, l)
	return !h.refuse
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &lineHandler{h.lineLog, append(slices.Clip(h.attrs), attrs...)}
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }

// Logging hands a handler that has logline.Handler's method the RPC line
// of a call without an error as it is; that line is the record it gives
// any other handler, attribute for attribute; lines with an error are
// records.
func TestLoggingHandsRPCLines(t *testing.T) {
	t.Parallel()
	for _, refuse := range []bool{false, true} {
		t.Run(map[bool]string{false: "taken", true: "refused"}[refuse], func(t *testing.T) {
			t.Parallel()
			log := &lineLog{refuse: refuse}
			s := newTestServer(t, serverConfig{interceptors: func(o *observed) []connect.Interceptor {
				return []connect.Interceptor{o.chain.Tracing, o.chain.RequestID, interceptors.Logging(slog.New(&lineHandler{lineLog: log}))}
			}})
			client := s.pingClient(t)
			resp, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 7}))
			requestID := responseRequestID(t, resp, err)
			span := onlySpan(t, s.server.spans)
			if _, err := client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)})); err == nil {
				t.Fatal("Fail succeeded")
			}

			log.mu.Lock()
			defer log.mu.Unlock()
			if len(log.rpcs) != 1 {
				t.Fatalf("handed %d RPC lines; want 1, the success's", len(log.rpcs))
			}
			l := log.rpcs[0]
			if l.Level != slog.LevelInfo || l.Code != "ok" || l.RequestID != requestID || l.Stream ||
				!strings.HasPrefix(l.Peer, "127.0.0.1:") || l.Duration <= 0 || l.Time.IsZero() ||
				l.TraceID != span.SpanContext.TraceID().String() || l.SpanID != span.SpanContext.SpanID().String() {
				t.Errorf("RPC line %+v; want an info line of code ok, request id %s, the server span's ids", l, requestID)
			}
			shared := []slog.Attr{slog.String("kind", "server"), slog.String("procedure", "/connectkit.ping.v1.PingService/Ping"),
				slog.String("stream", "unary"), slog.String("protocol", "connect"), slog.String("http", "HTTP/2.0")}
			var want [][]slog.Attr
			if refuse {
				want = append(want, l.AppendAttrs(shared))
			}
			if len(log.records) != len(want)+1 {
				t.Fatalf("%d records; want %d", len(log.records), len(want)+1)
			}
			for i, attrs := range want {
				if !slices.EqualFunc(log.records[i], attrs, slog.Attr.Equal) {
					t.Errorf("record %v; want %v", log.records[i], attrs)
				}
			}
			failed := log.records[len(log.records)-1]
			if a := failed[len(failed)-1]; a.Key != "error" {
				t.Errorf("the failed call's record ends with %v; want its error", a)
			}
		})
	}
}
