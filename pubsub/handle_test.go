package pubsub_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"
)

// publishRaw publishes msg to b as a producer other than pubsub would, and
// waits for the broker to store it.
func publishRaw(tb testing.TB, b pubsub.Broker, msg *pubsub.Message) {
	tb.Helper()
	conf, err := b.Publish(tb.Context(), msg)
	if err == nil {
		err = conf.Wait(tb.Context())
	}
	if err != nil {
		tb.Fatalf("broker Publish: %v", err)
	}
}

// publishPings publishes n empty PingRequests to topic on b, through a
// publisher of its own.
func publishPings(tb testing.TB, b pubsub.Broker, topic string, n int) {
	tb.Helper()
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, topic)
	if err != nil {
		tb.Fatal(err)
	}
	for range n {
		if err := pub.Publish(tb.Context(), &pingv1.PingRequest{}); err != nil {
			tb.Fatal(err)
		}
	}
}

// deadLettersOf waits for n dead letters of topic and returns them.
func deadLettersOf(tb testing.TB, b pubsub.Broker, topic string, n int) []*pubsub.DeadLetter {
	tb.Helper()
	var dls []*pubsub.DeadLetter
	pubsubtest.WaitFor(tb, "the dead letters", func() bool {
		dls = dls[:0]
		for dl, err := range b.DeadLetters(tb.Context(), topic, "") {
			if err != nil {
				tb.Fatal(err)
			}
			dls = append(dls, dl)
		}
		return len(dls) >= n
	})
	if len(dls) != n {
		tb.Fatalf("%d dead letters, want %d", len(dls), n)
	}
	return dls
}

// TestDeadLetterKeepsForeignHeader checks that a message without a
// Content-Type (from a producer other than pubsub) reaches the chain as
// protobuf, and is dead-lettered with its own headers: no Content-Type.
func TestDeadLetterKeepsForeignHeader(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	seen := make(chan string, 2)
	sub, err := pubsub.NewSubscriber(b, "foreign", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		seen <- info.Header.Get(pubsub.HeaderContentType)
		return pubsub.Permanent(errors.New("no"))
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	data, err := proto.Marshal(&pingv1.PingRequest{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, b, &pubsub.Message{ID: "with-header", Topic: "foreign", Data: data, Header: http.Header{"X-Origin": {"legacy"}}})
	publishRaw(t, b, &pubsub.Message{ID: "no-header", Topic: "foreign", Data: data})
	for range 2 {
		if ct := <-seen; ct != pubsub.ContentTypeProto {
			t.Errorf("the chain saw Content-Type %q, want %q", ct, pubsub.ContentTypeProto)
		}
	}
	for _, dl := range deadLettersOf(t, b, "foreign", 2) {
		if ct, ok := dl.Message.Header[pubsub.HeaderContentType]; ok {
			t.Errorf("dead letter %s has Content-Type %q, want none as published", dl.Message.ID, ct)
		}
		if got, want := dl.Message.Header.Get("X-Origin"), map[string]string{"with-header": "legacy"}[dl.Message.ID]; got != want {
			t.Errorf("dead letter %s has X-Origin %q, want %q", dl.Message.ID, got, want)
		}
	}
}

// TestContentTypeIsCaseInsensitive checks that media types and the charset
// are matched without regard to case (RFC 9110), and IANA's protobuf media
// types and their aliases taken, through the mem broker: such messages are
// handled, messages of other content types dead-lettered.
func TestContentTypeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	handled := make(chan string, 10)
	sub, err := pubsub.NewSubscriber(b, "cased", "s", func(ctx context.Context, msg *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		if msg.GetText() != "hi" {
			return pubsub.Permanent(errors.New("decoded wrong: " + msg.GetText()))
		}
		handled <- info.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	binary, err := proto.Marshal(&pingv1.PingRequest{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	json := []byte(`{"text":"hi"}`)
	accepted := map[string][]byte{
		"application/json; charset=UTF-8": json,
		"Application/JSON":                json,
		"application/json;charset=Utf-8":  json,
		"APPLICATION/PROTO":               binary,
		// IANA's names, which producers in other languages write.
		"application/protobuf":                     binary,
		"application/x-protobuf":                   binary,
		"application/x-protobuffer":                binary,
		"application/protobuf+json; charset=utf-8": json,
		"application/x-protobuf+json":              json,
	}
	refused := []string{"application/json; charset=latin1", "application/proto; charset=utf-8", "text/plain", "application/json; charset",
		"application/x-protobuf; encoding=delimited", "application/protobuf+json; charset=latin1"}
	for ct, data := range accepted {
		publishRaw(t, b, &pubsub.Message{ID: ct, Topic: "cased", Data: data, Header: http.Header{pubsub.HeaderContentType: {ct}}})
	}
	for _, ct := range refused {
		publishRaw(t, b, &pubsub.Message{ID: ct, Topic: "cased", Data: json, Header: http.Header{pubsub.HeaderContentType: {ct}}})
	}
	var dls []*pubsub.DeadLetter
	pubsubtest.WaitFor(t, "every message handled or dead-lettered", func() bool {
		dls = dls[:0]
		for dl, err := range b.DeadLetters(t.Context(), "cased", "") {
			if err != nil {
				t.Fatal(err)
			}
			dls = append(dls, dl)
		}
		return len(handled)+len(dls) == len(accepted)+len(refused)
	})
	close(handled)
	for id := range handled {
		if accepted[id] == nil {
			t.Errorf("message with Content-Type %q handled, want it dead-lettered", id)
		}
	}
	for _, dl := range dls {
		if accepted[dl.Message.ID] != nil || dl.Reason != pubsub.ReasonUndecodable {
			t.Errorf("message with Content-Type %q dead-lettered (%s: %s), want only those of %q, as undecodable", dl.Message.ID, dl.Reason, dl.Error, refused)
		}
	}
}

// TestPanicInDeadLetter checks that the dead letter of a panicking handler
// names the panic, short, whether or not the chain recovers it, while the
// chain's error stays generic.
func TestPanicInDeadLetter(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	tests := []struct {
		name  string
		opts  []connect.HandlerOption
		value any
		want  string
	}{
		{name: "recovered by the chain", opts: []connect.HandlerOption{connect.WithInterceptors(interceptors.Recovery(nil))},
			value: "order 42 has no lines", want: "internal: internal error (panic: order 42 has no lines)"},
		{name: "no recovery in the chain", value: errors.New("nil map"), want: "internal: handler panicked (panic: nil map)"},
		{name: "long value", opts: []connect.HandlerOption{connect.WithInterceptors(interceptors.Recovery(nil))},
			value: long, want: "internal: internal error (panic: " + long[:200] + "…)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := mem.New()
			t.Cleanup(func() { _ = b.Close() })
			chainErr := make(chan error, 1)
			observe := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					res, err := next(ctx, req)
					chainErr <- err
					return res, err
				}
			})
			opts := append([]connect.HandlerOption{connect.WithInterceptors(observe)}, tc.opts...)
			sub, err := pubsub.NewSubscriber(b, "panics", "s", func(context.Context, *pingv1.PingRequest) error {
				panic(tc.value)
			}, pubsub.WithHandlerOptions(opts...), pubsub.WithDelivery(pubsub.DeliveryConfig{MaxAttempts: 1}))
			if err != nil {
				t.Fatal(err)
			}
			pubsubtest.Start(t, sub)
			publishRaw(t, b, &pubsub.Message{ID: "m", Topic: "panics"})
			dl := deadLettersOf(t, b, "panics", 1)[0]
			if dl.Error != tc.want {
				t.Errorf("dead letter's error %q, want %q", dl.Error, tc.want)
			}
			if len(tc.opts) > 0 {
				if err := <-chainErr; err == nil || err.Error() != "internal: internal error" {
					t.Errorf("the chain's error %v, want the generic internal error", err)
				}
			}
		})
	}
}

// failingDeadLetters is a broker whose dead-letter storage fails its first
// calls, as a dead-letter stream unavailable for a while would.
type failingDeadLetters struct {
	pubsub.Broker
	fails atomic.Int32
}

func (b *failingDeadLetters) DeadLetter(ctx context.Context, dl *pubsub.DeadLetter) error {
	if b.fails.Add(-1) >= 0 {
		return errors.New("dead-letter storage unavailable")
	}
	return b.Broker.DeadLetter(ctx, dl)
}

// TestDeadLetterStoredLateKeepsItsReason: a message of the wrong type whose
// dead letter could not be stored until it was past its last attempt is
// filed as a type mismatch, not as max_attempts.
func TestDeadLetterStoredLateKeepsItsReason(t *testing.T) {
	t.Parallel()
	inner := mem.New()
	t.Cleanup(func() { _ = inner.Close() })
	b := &failingDeadLetters{Broker: inner}
	b.fails.Store(2)
	sub, err := pubsub.NewSubscriber(b, "late.dl", "s", func(context.Context, *pingv1.PingRequest) error { return nil },
		pubsub.WithDelivery(pubsub.DeliveryConfig{MaxAttempts: 2, Backoff: pubsub.Backoff{Initial: time.Millisecond, Max: time.Millisecond}}))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	publishRaw(t, inner, &pubsub.Message{ID: "wrong-type", Topic: "late.dl", Header: http.Header{pubsub.HeaderMessageType: {"other.v1.Event"}}})
	dl := deadLettersOf(t, inner, "late.dl", 1)[0]
	if dl.Reason != pubsub.ReasonTypeMismatch || dl.Attempts != 3 {
		t.Errorf("dead letter: reason %q after %d attempts (%s), want %q after 3", dl.Reason, dl.Attempts, dl.Error, pubsub.ReasonTypeMismatch)
	}
}

// TestRequestIDOfAMessagePublishedOutsideACall checks that a message
// published through the RequestID interceptor outside any call logs one
// request id, its message's, from its publish to its handler, and carries
// no X-Request-Id that would repeat the message id.
func TestRequestIDOfAMessagePublishedOutsideACall(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	type seen struct {
		requestID string
		header    http.Header
	}
	handled := make(chan seen, 1)
	sub, err := pubsub.NewSubscriber(b, "requests", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		handled <- seen{interceptors.RequestIDFrom(ctx), info.Header}
		return nil
	}, pubsub.WithHandlerOptions(connect.WithInterceptors(interceptors.RequestID())))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	var published string
	capture := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			published = interceptors.RequestIDFrom(ctx)
			return next(ctx, req)
		}
	})
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "requests",
		pubsub.WithClientOptions(connect.WithInterceptors(interceptors.RequestID(), capture)))
	if err != nil {
		t.Fatal(err)
	}
	f := pub.PublishAsync(t.Context(), &pingv1.PingRequest{})
	if err := f.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := <-handled
	if published != f.ID() || got.requestID != f.ID() {
		t.Errorf("request id %q on publish, %q in the handler; want the message id %q in both", published, got.requestID, f.ID())
	}
	if v, ok := got.header[interceptors.RequestIDHeader]; ok {
		t.Errorf("the message carries X-Request-Id %q", v)
	}
}

// TestChainKnowsAMessageWithoutItsContext checks that the interceptors
// after one that calls on with a context of its own, without the message's
// (context.Background()), still log a publish and a delivery as messages:
// they ask pubsub's request, not the context, what message it is.
func TestChainKnowsAMessageWithoutItsContext(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	detach := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(_ context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			return next(context.Background(), req)
		}
	})
	handled := make(chan struct{}, 1)
	sub, err := pubsub.NewSubscriber(b, "detached", "s", func(context.Context, *pingv1.PingRequest) error {
		handled <- struct{}{}
		return nil
	}, pubsub.WithHandlerOptions(connect.WithInterceptors(detach, interceptors.Logging(logger))))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "detached",
		pubsub.WithClientOptions(connect.WithInterceptors(detach, interceptors.Logging(logger))))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	<-handled
	pubsubtest.WaitFor(t, "two log lines", func() bool { return strings.Count(logs.String(), "\n") >= 2 })
	for _, kind := range []string{"publish", "process"} {
		if !strings.Contains(logs.String(), `"kind":"`+kind+`","system":"mem","topic":"detached"`) {
			t.Errorf("no %s line for the message; logged:\n%s", kind, logs.String())
		}
	}
}

// TestRunUnderAClientContext checks that the handlers' context still holds
// what Run's context holds for connect's chain, which a delivery's context
// answers without looking: run under a context made by
// connect.NewClientContext, every delivery fails connect's check, as
// connect's chain fails any call under such a context.
func TestRunUnderAClientContext(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	noop := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc { return next })
	sub, err := pubsub.NewSubscriber(b, "clientctx", "s", func(context.Context, *pingv1.PingRequest) error {
		t.Error("the handler ran")
		return nil
	}, pubsub.WithHandlerOptions(connect.WithInterceptors(noop)), pubsub.WithDelivery(pubsub.DeliveryConfig{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	clientCtx, _ := connect.NewClientContext(context.Background())
	ctx, cancel := context.WithCancel(clientCtx)
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "clientctx")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	dl := deadLettersOf(t, b, "clientctx", 1)[0]
	if !strings.Contains(dl.Error, "creating a new context in an interceptor is prohibited") {
		t.Errorf("dead letter's error %q, want connect's refusal of a client context", dl.Error)
	}
}

// TestResilienceKnowsAMessageWithoutItsContext checks that Retry,
// CircuitBreaker and RateLimit, after an interceptor that calls on with a
// context of its own, still know a publish and a delivery for messages, as
// Logging does (TestChainKnowsAMessageWithoutItsContext): Retry does not
// retry a publish, the breaker does not count it, the rate limit does not
// refuse a delivery.
func TestResilienceKnowsAMessageWithoutItsContext(t *testing.T) {
	t.Parallel()
	detach := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(_ context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			return next(context.Background(), req)
		}
	})
	logger := slog.New(slog.DiscardHandler)
	t.Run("retry", func(t *testing.T) {
		t.Parallel()
		m := mem.New()
		t.Cleanup(func() { _ = m.Close() })
		b := &failingFirst{Broker: m}
		retry, err := interceptors.Retry(logger, prometheus.NewRegistry(), interceptors.WithRetryBackoff(time.Millisecond, time.Millisecond, 1))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "detached", pubsub.WithClientOptions(connect.WithInterceptors(detach, retry)))
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); !errors.Is(err, interceptors.ErrNotSent) {
			t.Errorf("Publish = %v, want the broker's first error, not retried", err)
		}
		if n := b.calls.Load(); n != 1 {
			t.Errorf("the broker took %d publishes, want 1", n)
		}
	})
	t.Run("breaker", func(t *testing.T) {
		t.Parallel()
		b := mem.New()
		_ = b.Close()
		breaker, err := interceptors.CircuitBreaker(logger, prometheus.NewRegistry(), interceptors.WithBreakerConsecutiveFailures(1))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "detached", pubsub.WithClientOptions(connect.WithInterceptors(detach, breaker)))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); !errors.Is(err, pubsub.ErrClosed) {
				t.Errorf("Publish %d to a closed broker = %v, want pubsub.ErrClosed, not the breaker's refusal", i, err)
			}
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		t.Parallel()
		b := mem.New()
		t.Cleanup(func() { _ = b.Close() })
		var handled atomic.Int32
		sub, err := pubsub.NewSubscriber(b, "detached", "s", func(context.Context, *pingv1.PingRequest) error {
			handled.Add(1)
			return nil
		}, pubsub.WithHandlerOptions(connect.WithInterceptors(detach, interceptors.RateLimit(rate.Every(time.Hour), 1))),
			pubsub.WithDelivery(pubsub.DeliveryConfig{MaxAttempts: 1}))
		if err != nil {
			t.Fatal(err)
		}
		pubsubtest.Start(t, sub)
		publishPings(t, b, "detached", 2)
		deadLettered := func() bool {
			for range b.DeadLetters(t.Context(), "detached", "") {
				return true
			}
			return false
		}
		pubsubtest.WaitFor(t, "both deliveries", func() bool { return handled.Load() == 2 || deadLettered() })
		if deadLettered() {
			t.Errorf("a delivery was dead-lettered (%d handled): the rate limit refused it", handled.Load())
		}
	})
}

// failingFirst is a broker whose first publish fails without sending the
// message, as Retry retries whatever the method.
type failingFirst struct {
	pubsub.Broker
	calls atomic.Int32
}

func (f *failingFirst) Publish(ctx context.Context, msg *pubsub.Message) (pubsub.Confirmation, error) {
	if f.calls.Add(1) == 1 {
		return nil, connect.NewError(connect.CodeUnavailable, interceptors.ErrNotSent)
	}
	return f.Broker.Publish(ctx, msg)
}

// TestHandlerCallsAnRPCWithItsContext checks that a handler's RPC made
// with the delivery's context passes connect's check of the client's call
// info, which the delivery's context answers without walking the contexts
// below it (chainKeys), and that one made with a connect.NewClientContext
// of it sends that call info's headers.
func TestHandlerCallsAnRPCWithItsContext(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	noop := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc { return next })
	sent := make(chan http.Header, 2)
	client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](recordingHTTP(sent),
		"http://svc"+pingv1connect.PingServicePingProcedure, connect.WithInterceptors(noop))
	errs := make(chan error, 2)
	sub, err := pubsub.NewSubscriber(b, "rpc", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		_, err := client.CallUnary(ctx, connect.NewRequest(&pingv1.PingRequest{}))
		errs <- err
		clientCtx, call := connect.NewClientContext(ctx)
		call.RequestHeader().Set("X-Through", "call-info")
		_, err = client.CallUnary(clientCtx, connect.NewRequest(&pingv1.PingRequest{}))
		errs <- err
		return nil
	}, pubsub.WithHandlerOptions(connect.WithInterceptors(noop)), pubsub.WithDelivery(pubsub.DeliveryConfig{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	publishPings(t, b, "rpc", 1)
	var dead []string
	pubsubtest.WaitFor(t, "the handler's RPCs", func() bool {
		for dl := range b.DeadLetters(t.Context(), "rpc", "") {
			dead = append(dead, dl.Error)
		}
		return len(errs) == 2 || len(dead) > 0
	})
	if len(dead) > 0 {
		t.Fatalf("the delivery was dead-lettered: %q", dead)
	}
	for i, through := range []string{"", "call-info"} {
		if err := <-errs; !errors.Is(err, errRecorded) {
			t.Fatalf("RPC %d from the handler = %v, want it sent", i, err)
		}
		if h := <-sent; h.Get("X-Through") != through {
			t.Errorf("RPC %d sent X-Through %q, want %q", i, h.Get("X-Through"), through)
		}
	}
}

// errRecorded is the error of every request of recordingHTTP.
var errRecorded = errors.New("recorded")

// recordingHTTP is an HTTP client that sends each request's headers to its
// channel, and fails it.
type recordingHTTP chan http.Header

func (r recordingHTTP) Do(req *http.Request) (*http.Response, error) {
	r <- req.Header.Clone()
	return nil, errRecorded
}
