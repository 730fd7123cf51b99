package interceptors_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/msgctx"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// Package pubsub presents a delivery to a connect handler chain as a unary
// call, and a publish as a call of a connect client: these tests serve the
// delivery with a connect unary handler, whose chain sees the same request,
// with an msgctx.Info in the context.
const (
	topic        = "connectkit.ping.v1.PingRequest"
	subscription = "billing"
	delivery     = "/" + topic + "/" + subscription
	// producerTraceparent is the context a producer put in the message's
	// headers.
	producerTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

// subscriber is a delivery handler behind the server chain: it fails as
// its message's text asks.
func subscriber(t *testing.T, o *observed) http.Handler {
	t.Helper()
	return connect.NewUnaryHandler(delivery,
		func(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
			interceptors.LoggerFrom(ctx).Info("handling")
			switch req.Msg.GetText() {
			case "unavailable":
				return nil, connect.NewError(connect.CodeUnavailable, errors.New("try later"))
			case "bad":
				return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("cannot apply"))
			case "reason":
				_, err := reasonPings{}.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)}))
				return nil, err
			case "panic":
				panic("boom")
			}
			return connect.NewResponse(&pingv1.PingResponse{}), nil
		}, connect.WithInterceptors(o.chain.Server()...))
}

// deliver serves msg to h as pubsub does, and checks that the chain did not
// echo a request id: a delivery's response goes nowhere.
func deliver(t *testing.T, h http.Handler, info *msgctx.Info, msg proto.Message) {
	t.Helper()
	body, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(msgctx.NewContext(t.Context(), info), http.MethodPost, delivery, bytes.NewReader(body))
	req.RemoteAddr = "" // pubsub's delivery has no peer address (msgctx.ForCall)
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Traceparent", producerTraceparent)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if id := rec.Header().Get(interceptors.RequestIDHeader); id != "" {
		t.Errorf("delivery's response has %s %q", interceptors.RequestIDHeader, id)
	}
}

func TestMessageProcess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                 string
		msg                  *pingv1.PingRequest
		attempt, maxAttempts int
		outcome, code, level string
		panics               bool
	}{
		{name: "ack", msg: &pingv1.PingRequest{Text: "ok"}, attempt: 1, maxAttempts: 5, outcome: "ack", code: "ok", level: "INFO"},
		{name: "retry", msg: &pingv1.PingRequest{Text: "unavailable"}, attempt: 2, maxAttempts: 5, outcome: "retry", code: "unavailable", level: "WARN"},
		{name: "last attempt", msg: &pingv1.PingRequest{Text: "unavailable"}, attempt: 5, maxAttempts: 5, outcome: "dead_letter", code: "unavailable", level: "ERROR"},
		{name: "permanent", msg: &pingv1.PingRequest{Text: "bad"}, attempt: 1, outcome: "dead_letter", code: "failed_precondition", level: "ERROR"},
		{name: "invalid", msg: &pingv1.PingRequest{Number: -1}, attempt: 1, outcome: "dead_letter", code: "invalid_argument", level: "ERROR"},
		{name: "panic", msg: &pingv1.PingRequest{Text: "panic"}, attempt: 1, outcome: "retry", code: "internal", level: "ERROR", panics: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newObserved(t, slog.LevelInfo)
			info := &msgctx.Info{
				Operation: msgctx.Process, System: "mem", Topic: topic, Subscription: subscription,
				MessageID: "msg-1", MessageType: topic, Attempt: tc.attempt, MaxAttempts: tc.maxAttempts,
			}
			began := time.Now()
			deliver(t, subscriber(t, o), info, tc.msg)
			took := time.Since(began)

			line := o.logs.waitLine(t, map[string]any{"msg": "message"})
			assertRPCLine(t, line, map[string]any{
				"level": tc.level, "kind": "process", "system": "mem", "topic": topic,
				"subscription": subscription, "message_type": topic, "message_id": "msg-1",
				"attempt": float64(tc.attempt), "outcome": tc.outcome, "code": tc.code,
				"trace_id": "0af7651916cd43dd8448eb211c80319c",
			})
			assertPanicFields(t, line, tc.panics)
			if lines := o.logs.matching(t, map[string]any{"msg": "rpc"}); len(lines) != 0 {
				t.Errorf("a delivery was logged as an RPC: %v", lines)
			}
			if tc.name != "invalid" { // an invalid message never reaches the handler
				o.logs.waitLine(t, map[string]any{
					"msg": "handling", "topic": topic, "subscription": subscription,
					"message_id": "msg-1", "attempt": float64(tc.attempt), "trace_id": line["trace_id"],
				})
			}

			labels := map[string]string{"topic": topic, "subscription": subscription}
			if got := metricValue(t, o.reg, "pubsub_handling_seconds", labels); got != 1 {
				t.Errorf("pubsub_handling_seconds count = %v, want 1", got)
			}
			// The handling is timed from its start: the observation lies
			// within the time deliver took.
			for _, m := range gatherSeries(t, o.reg, "pubsub_handling_seconds", labels) {
				if sum := m.GetHistogram().GetSampleSum(); sum < 0 || sum > took.Seconds() {
					t.Errorf("pubsub_handling_seconds sum = %vs, want within the %v deliver took", sum, took)
				}
			}
			labels["outcome"] = tc.outcome
			if got := metricValue(t, o.reg, "pubsub_handled_total", labels); got != 1 {
				t.Errorf("pubsub_handled_total%v = %v, want 1", labels, got)
			}
			if got := metricValue(t, o.reg, "grpc_server_started_total", nil); got != -1 {
				t.Errorf("a delivery was counted as an RPC: grpc_server_started_total = %v", got)
			}
			wantPanics := -1.0 // no series until a panic
			if tc.panics {
				wantPanics = 1
			}
			delete(labels, "outcome")
			if got := metricValue(t, o.reg, "pubsub_panics_recovered_total", labels); got != wantPanics {
				t.Errorf("pubsub_panics_recovered_total%v = %v, want %v", labels, got, wantPanics)
			}

			span := onlySpan(t, o.spans)
			if span.Name != "process "+topic || span.SpanKind != trace.SpanKindConsumer {
				t.Errorf("span %q of kind %s, want process of kind consumer", span.Name, span.SpanKind)
			}
			if span.Parent.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || span.Parent.SpanID().String() != "b7ad6b7169203331" {
				t.Errorf("span parent = %v, want the producer's context", span.Parent)
			}
			// The messaging conventions: a process span links to its
			// message's creation context, whether or not it is the parent.
			if len(span.Links) != 1 || !span.Links[0].SpanContext.Equal(span.Parent) {
				t.Errorf("span links = %+v, want one to the producer's context %v", span.Links, span.Parent)
			}
			if wantErr := tc.code != "ok"; (span.Status.Code == codes.Error) != wantErr {
				t.Errorf("span status = %v", span.Status)
			}
			assertAttributes(t, span.Attributes, map[string]string{
				"messaging.system": "mem", "messaging.destination.name": topic,
				"messaging.consumer.group.name": subscription, "messaging.message.id": "msg-1",
				"messaging.operation.type": "process", "messaging.operation.name": "process",
			})
		})
	}
}

func TestMessagePublish(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		fail        bool
		code, level string
	}{
		{name: "ok", code: "ok", level: "DEBUG"},
		{name: "broker down", fail: true, code: "unavailable", level: "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			headers := make(chan http.Header, 1)
			const publish = "/" + topic + "/publish"
			broker := connect.NewUnaryHandler(publish,
				func(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
					headers <- req.Header().Clone()
					if tc.fail {
						return nil, connect.NewError(connect.CodeUnavailable, errors.New("broker down"))
					}
					return connect.NewResponse(&pingv1.PingResponse{}), nil
				})
			o := newObserved(t, slog.LevelDebug)
			client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](httpClient(t, false), serve(t, broker)+publish,
				connect.WithInterceptors(o.chain.Client()...))
			info := &msgctx.Info{Operation: msgctx.Publish, System: "mem", Topic: topic, MessageID: "msg-2", MessageType: topic}
			_, err := client.CallUnary(msgctx.NewContext(t.Context(), info), connect.NewRequest(&pingv1.PingRequest{}))
			if (err != nil) != tc.fail {
				t.Fatalf("err = %v", err)
			}

			span := onlySpan(t, o.spans)
			if span.Name != "publish "+topic || span.SpanKind != trace.SpanKindProducer {
				t.Errorf("span %q of kind %s, want publish of kind producer", span.Name, span.SpanKind)
			}
			assertAttributes(t, span.Attributes, map[string]string{
				"messaging.system": "mem", "messaging.destination.name": topic, "messaging.message.id": "msg-2",
				"messaging.operation.type": "send", "messaging.operation.name": "publish",
			})
			traceparent := (<-headers).Get("Traceparent")
			if want := "00-" + span.SpanContext.TraceID().String() + "-" + span.SpanContext.SpanID().String() + "-01"; traceparent != want {
				t.Errorf("message carries traceparent %q, want the producer span's %q", traceparent, want)
			}

			line := o.logs.waitLine(t, map[string]any{"msg": "message"})
			assertRPCLine(t, line, map[string]any{
				"level": tc.level, "kind": "publish", "system": "mem", "topic": topic, "message_id": "msg-2",
				"code": tc.code, "trace_id": span.SpanContext.TraceID().String(),
			})
			if _, ok := line["outcome"]; ok {
				t.Errorf("a publish has an outcome: %v", line)
			}
			grpcCode := map[string]string{"ok": "OK", "unavailable": "Unavailable"}[tc.code]
			if got := metricValue(t, o.reg, "pubsub_published_total", map[string]string{"topic": topic, "code": grpcCode}); got != 1 {
				t.Errorf("pubsub_published_total = %v, want 1", got)
			}
			if got := metricValue(t, o.reg, "grpc_client_started_total", nil); got != -1 {
				t.Errorf("a publish was counted as an RPC: grpc_client_started_total = %v", got)
			}
		})
	}
}

// TestMessageQuietSuccess checks that WithoutMessageSuccessLogs drops the
// lines of acked messages only.
func TestMessageQuietSuccess(t *testing.T) {
	t.Parallel()
	o := newObserved(t, slog.LevelInfo, interceptors.WithoutMessageSuccessLogs())
	h := subscriber(t, o)
	for i, text := range []string{"ok", "unavailable"} {
		info := &msgctx.Info{Operation: msgctx.Process, System: "mem", Topic: topic, Subscription: subscription,
			MessageID: text, Attempt: 1 + i}
		deliver(t, h, info, &pingv1.PingRequest{Text: text})
	}
	o.logs.waitLine(t, map[string]any{"msg": "message", "message_id": "unavailable", "outcome": "retry"})
	if lines := o.logs.matching(t, map[string]any{"msg": "message", "message_id": "ok"}); len(lines) != 0 {
		t.Errorf("an acked message was logged: %v", lines)
	}
}

// TestMessageTimedFromStart checks that a delivery's log line and
// pubsub_handling_seconds are timed from msgctx.Info.Start, the clock
// reading pubsub takes as the chain begins, not from a reading of their own.
func TestMessageTimedFromStart(t *testing.T) {
	t.Parallel()
	o := newObserved(t, slog.LevelInfo)
	const ago = time.Hour
	info := &msgctx.Info{Operation: msgctx.Process, System: "mem", Topic: topic, Subscription: subscription,
		MessageID: "msg-start", MessageType: topic, Attempt: 1, Start: time.Now().Add(-ago)}
	deliver(t, subscriber(t, o), info, &pingv1.PingRequest{Text: "ok"})
	line := o.logs.waitLine(t, map[string]any{"msg": "message", "message_id": "msg-start"})
	if d, _ := line["duration"].(float64); time.Duration(d) < ago {
		t.Errorf("line's duration = %v, want at least the %v since Info.Start", time.Duration(d), ago)
	}
	labels := map[string]string{"topic": topic, "subscription": subscription}
	series := gatherSeries(t, o.reg, "pubsub_handling_seconds", labels)
	if len(series) != 1 {
		t.Fatalf("pubsub_handling_seconds: %d series, want 1", len(series))
	}
	if sum := series[0].GetHistogram().GetSampleSum(); sum < ago.Seconds() {
		t.Errorf("pubsub_handling_seconds sum = %vs, want at least the %v since Info.Start", sum, ago)
	}
}

// TestRPCOfAHandler checks that an RPC a subscriber's handler makes, whose
// context carries the delivery's msgctx.Info, is traced, logged and counted
// as an RPC client call: its traceparent reaches the server, and the
// delivery is not recorded twice.
func TestRPCOfAHandler(t *testing.T) {
	t.Parallel()
	headers := make(chan http.Header, 1)
	const ping = "/connectkit.ping.v1.PingService/Ping"
	server := connect.NewUnaryHandler(ping,
		func(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
			headers <- req.Header().Clone()
			return connect.NewResponse(&pingv1.PingResponse{}), nil
		})
	o := newObserved(t, slog.LevelInfo)
	client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](httpClient(t, false), serve(t, server)+ping,
		connect.WithInterceptors(o.chain.Client()...))
	info := &msgctx.Info{Operation: msgctx.Process, System: "mem", Topic: topic, Subscription: subscription,
		MessageID: "msg-3", MessageType: topic, Attempt: 1}
	if _, err := client.CallUnary(msgctx.NewContext(t.Context(), info), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Fatal(err)
	}

	span := onlySpan(t, o.spans)
	if span.SpanKind != trace.SpanKindClient {
		t.Errorf("span %q of kind %s, want an RPC client span", span.Name, span.SpanKind)
	}
	traceparent := (<-headers).Get("Traceparent")
	if want := "00-" + span.SpanContext.TraceID().String() + "-" + span.SpanContext.SpanID().String() + "-01"; traceparent != want {
		t.Errorf("RPC carries traceparent %q, want the client span's %q", traceparent, want)
	}
	o.logs.waitLine(t, map[string]any{"msg": "rpc", "kind": "client", "procedure": ping})
	if lines := o.logs.matching(t, map[string]any{"msg": "message"}); len(lines) != 0 {
		t.Errorf("the RPC was logged as a message: %v", lines)
	}
	if got := metricValue(t, o.reg, "grpc_client_started_total", nil); got != 1 {
		t.Errorf("grpc_client_started_total = %v, want 1", got)
	}
	if got := metricValue(t, o.reg, "pubsub_handled_total", nil); got != -1 {
		t.Errorf("the RPC was counted as a delivery: pubsub_handled_total = %v", got)
	}
}
