package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"google.golang.org/protobuf/proto"
)

// testWaitAgain waits on each Future of asynchronous publishes with a done
// context, then from three goroutines at once, then once more: every Wait
// with time left answers that the broker stored the message, as a Future
// keeps its outcome.
func testWaitAgain(t *testing.T, h *harness) {
	pub := h.publisher(t, h.broker, "again")
	done, cancel := context.WithCancel(t.Context())
	cancel()
	ctx, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	for i := range 5 {
		f := pub.PublishAsync(t.Context(), &pingv1.PingRequest{Number: int64(i)})
		if err := f.Wait(done); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("message %d: Wait with a done context = %v, want nil or %v", i, err, context.Canceled)
		}
		errs := make(chan error, 3)
		for range 3 {
			go func() { errs <- f.Wait(ctx) }()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatalf("message %d: one of three Waits at once = %v, want nil", i, err)
			}
		}
		if err := f.Wait(ctx); err != nil {
			t.Fatalf("message %d: Wait once more = %v, want nil", i, err)
		}
	}
}

func testRoundTrip(t *testing.T, h *harness) {
	if got := h.broker.System(); got != h.features.System {
		t.Errorf("System() = %q, want %q", got, h.features.System)
	}
	rec := newRecorder()
	sub := newSubscriber(t, h.broker, "pings", "roundtrip", rec.handler(nil), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "pings")
	want := &pingv1.PingRequest{Number: 7, Text: "hello", Secret: "s3"}
	before := time.Now()
	if err := pub.Publish(t.Context(), want, pubsub.WithMessageID("msg-1")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	f := pub.PublishAsync(t.Context(), &pingv1.PingRequest{Number: 8})
	if err := f.Wait(t.Context()); err != nil {
		t.Fatalf("PublishAsync: %v", err)
	}
	WaitFor(t, "two messages", func() bool { return rec.succeeded() == 2 })

	c := rec.callsOf("msg-1")
	if len(c) != 1 {
		t.Fatalf("message msg-1 handled %d times, want 1", len(c))
	}
	if !proto.Equal(c[0].msg, want) {
		t.Errorf("handler got %v, want %v", c[0].msg, want)
	}
	info := c[0].info
	// The broker's clock stamps Time: a second either way for a broker
	// on another machine than the test's.
	if info.Time.Before(before.Add(-time.Second)) || info.Time.After(c[0].at.Add(time.Second)) {
		t.Errorf("MessageInfo.Time = %v, want between the publish (%v) and the handling (%v)", info.Time, before, c[0].at)
	}
	wantInfo := pubsub.MessageInfo{ID: "msg-1", Topic: "pings", Subscription: "roundtrip", Type: "connectkit.ping.v1.PingRequest", Attempt: 1, MaxAttempts: pubsub.DefaultMaxAttempts}
	info.Header, info.Time = nil, time.Time{}
	if !reflect.DeepEqual(info, wantInfo) {
		t.Errorf("MessageInfo = %+v, want %+v", info, wantInfo)
	}
	hdr := c[0].info.Header
	if got := hdr.Get(pubsub.HeaderContentType); got != pubsub.ContentTypeProto {
		t.Errorf("Content-Type = %q, want %q", got, pubsub.ContentTypeProto)
	}
	if got := hdr.Get(pubsub.HeaderMessageType); got != "connectkit.ping.v1.PingRequest" {
		t.Errorf("%s = %q, want the message's full name", pubsub.HeaderMessageType, got)
	}
	if got := rec.callsOf(f.ID()); len(got) != 1 || got[0].msg.GetNumber() != 8 {
		t.Errorf("async message %s: calls %v", f.ID(), got)
	}
}

func testJSON(t *testing.T, h *harness) {
	rec := newRecorder()
	sub := newSubscriber(t, h.broker, "json", "s", rec.handler(nil), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "json", pubsub.WithJSON())
	want := &pingv1.PingRequest{Number: 9, Text: "json"}
	if err := pub.Publish(t.Context(), want, pubsub.WithMessageID("j")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	WaitFor(t, "the message", func() bool { return rec.succeeded() == 1 })
	c := rec.callsOf("j")[0]
	if !proto.Equal(c.msg, want) {
		t.Errorf("handler got %v, want %v", c.msg, want)
	}
	if got := c.info.Header.Get(pubsub.HeaderContentType); got != pubsub.ContentTypeJSON {
		t.Errorf("Content-Type = %q, want %q", got, pubsub.ContentTypeJSON)
	}
}

func testPublishBatch(t *testing.T, h *harness) {
	rec := newRecorder()
	sub := newSubscriber(t, h.broker, "batch", "s", rec.handler(nil), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	msgs := make([]*pingv1.PingRequest, 50)
	for i := range msgs {
		msgs[i] = &pingv1.PingRequest{Number: int64(i)}
	}
	if err := h.publisher(t, h.broker, "batch").PublishBatch(t.Context(), msgs...); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	WaitFor(t, "50 messages", func() bool { return rec.succeeded() == 50 })
	seen := map[int64]bool{}
	for _, id := range rec.ids() {
		seen[rec.callsOf(id)[0].msg.GetNumber()] = true
	}
	if len(seen) != 50 {
		t.Errorf("handled %d distinct numbers, want 50", len(seen))
	}
}

func testValidationOnPublish(t *testing.T, h *harness) {
	rec := newRecorder()
	sub := newSubscriber(t, h.broker, "valid", "s", rec.handler(nil), pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1}))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "valid")
	err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: -1})
	if code := connect.CodeOf(err); code != connect.CodeInvalidArgument {
		t.Errorf("Publish(invalid) = %v (code %v), want code invalid_argument", err, code)
	}
	err = pub.PublishBatch(t.Context(), &pingv1.PingRequest{Number: 1}, &pingv1.PingRequest{Number: -2})
	if err == nil || !strings.Contains(err.Error(), "message 1") {
		t.Errorf("PublishBatch(valid, invalid) = %v, want an error naming message 1", err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 100}, pubsub.WithMessageID("sentinel")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the sentinel", func() bool { return rec.handled("sentinel") })
	for _, id := range rec.ids() {
		if n := rec.callsOf(id)[0].msg.GetNumber(); n < 0 {
			t.Errorf("invalid message %d was delivered", n)
		}
	}
	if got := rec.succeeded(); got != 2 {
		t.Errorf("handled %d messages, want 2 (the valid one of the batch and the sentinel)", got)
	}
}

func testTypeMismatch(t *testing.T, h *harness) {
	var calls atomic.Int32
	sub := newSubscriber(t, h.broker, "mixed", "sums", func(context.Context, *pingv1.SumRequest) error {
		calls.Add(1)
		return nil
	}, pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	msg := &pingv1.PingRequest{Number: 3, Text: "not a sum"}
	if err := h.publisher(t, h.broker, "mixed").Publish(t.Context(), msg, pubsub.WithMessageID("wrong-type")); err != nil {
		t.Fatal(err)
	}
	dl := waitDeadLetters(t, h.broker, "mixed", "sums", 1)[0]
	if calls.Load() != 0 {
		t.Errorf("handler called %d times for a message of another type", calls.Load())
	}
	if dl.Reason != pubsub.ReasonTypeMismatch {
		t.Errorf("Reason = %q, want %q", dl.Reason, pubsub.ReasonTypeMismatch)
	}
	if !strings.Contains(dl.Error, "connectkit.ping.v1.PingRequest") || !strings.Contains(dl.Error, "connectkit.ping.v1.SumRequest") {
		t.Errorf("Error = %q, want both type names", dl.Error)
	}
	data, _ := proto.Marshal(msg)
	if dl.Message.ID != "wrong-type" || dl.Message.Topic != "mixed" || string(dl.Message.Data) != string(data) ||
		dl.Subscription != "sums" || dl.Attempts != 1 || dl.Time.IsZero() || dl.Ref == "" {
		t.Errorf("dead letter = %+v, want the original id, topic and payload, subscription sums, attempt 1, a time and a ref", dl)
	}
	if dl.HandlerType != "connectkit.ping.v1.SumRequest" {
		t.Errorf("HandlerType = %q, want the handler's type", dl.HandlerType)
	}
	if got := dl.Message.Header.Get("Pubsub-Handler-Type"); got != "" {
		t.Errorf("dead letter's headers carry the broker's bookkeeping: Pubsub-Handler-Type %q", got)
	}
	if got := dl.Message.Header.Get(pubsub.HeaderMessageType); got != "connectkit.ping.v1.PingRequest" {
		t.Errorf("dead letter's %s header = %q, want the original", pubsub.HeaderMessageType, got)
	}
}

func testUndecodable(t *testing.T, h *harness) {
	rec := newRecorder()
	sub := newSubscriber(t, h.broker, "raw", "s", rec.handler(nil), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	valid, err := proto.Marshal(&pingv1.PingRequest{Text: "compressed"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*pubsub.Message{
		{ID: "bad-bytes", Data: []byte{0xff, 0xff, 0xff, 0xff}, Header: map[string][]string{
			pubsub.HeaderContentType: {pubsub.ContentTypeProto}, pubsub.HeaderMessageType: {"connectkit.ping.v1.PingRequest"}}},
		{ID: "bad-type", Data: []byte("hello"), Header: map[string][]string{pubsub.HeaderContentType: {"text/plain"}}},
		// Bytes that decode, under an encoding that pubsub does not undo.
		{ID: "compressed", Data: valid, Header: map[string][]string{
			pubsub.HeaderContentType: {pubsub.ContentTypeProto}, "Content-Encoding": {"gzip"}}},
	} {
		m.Topic = "raw"
		conf, err := h.broker.Publish(t.Context(), m)
		if err == nil {
			err = conf.Wait(t.Context())
		}
		if err != nil {
			t.Fatalf("broker Publish: %v", err)
		}
	}
	for _, dl := range waitDeadLetters(t, h.broker, "raw", "s", 3) {
		if dl.Reason != pubsub.ReasonUndecodable || dl.Attempts != 1 {
			t.Errorf("dead letter %s: reason %q after %d attempts, want %q after 1", dl.Message.ID, dl.Reason, dl.Attempts, pubsub.ReasonUndecodable)
		}
		if dl.Message.ID == "compressed" && !strings.Contains(dl.Error, `content encoding "gzip"`) {
			t.Errorf("dead letter %s: error %q does not name the content encoding", dl.Message.ID, dl.Error)
		}
	}
	if n := rec.succeeded(); n != 0 {
		t.Errorf("handler called for %d undecodable messages", n)
	}
}

func testRetryWithBackoff(t *testing.T, h *harness) {
	rec := newRecorder()
	cfg := testDelivery()
	cfg.Backoff = pubsub.Backoff{Initial: 30 * time.Millisecond, Max: time.Second, Jitter: 0.2}
	sub := newSubscriber(t, h.broker, "retry", "s", rec.handler(func(_ *pingv1.PingRequest, info pubsub.MessageInfo) error {
		if info.Attempt < 3 {
			return fmt.Errorf("transient failure %d", info.Attempt)
		}
		return nil
	}), pubsub.WithDelivery(cfg))
	Start(t, sub)
	if err := h.publisher(t, h.broker, "retry").Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("r")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "a success", func() bool { return rec.succeeded() == 1 })
	calls := rec.callsOf("r")
	if len(calls) != 3 {
		t.Fatalf("handled %d times, want 3", len(calls))
	}
	for i, c := range calls {
		if c.info.Attempt != i+1 {
			t.Errorf("call %d: attempt %d, want %d", i, c.info.Attempt, i+1)
		}
		if i == 0 {
			continue
		}
		if !c.info.Time.Equal(calls[0].info.Time) {
			t.Errorf("attempt %d: MessageInfo.Time %v, want the first attempt's %v", i+1, c.info.Time, calls[0].info.Time)
		}
		// Lower bounds only: a loaded machine is slower, never faster.
		minDelay := time.Duration(float64(cfg.Backoff.Initial) * float64(int(1)<<(i-1)) * 0.8)
		if gap := c.at.Sub(calls[i-1].end); gap < minDelay {
			t.Errorf("attempt %d came %v after the failure of attempt %d, want at least the backoff %v", i+1, gap, i, minDelay)
		}
	}
}

func testPanicIsRetried(t *testing.T, h *harness) {
	var attempts atomic.Int32
	done := make(chan int, 1)
	sub := newSubscriber(t, h.broker, "panics", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		attempts.Add(1)
		if info.Attempt == 1 {
			panic("handler bug")
		}
		done <- info.Attempt
		return nil
	}, pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	if err := h.publisher(t, h.broker, "panics").Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case attempt := <-done:
		if attempt != 2 {
			t.Errorf("succeeded at attempt %d, want 2", attempt)
		}
	case <-time.After(waitTimeout):
		t.Fatal("a panicking handler's message was not delivered again")
	}
}

func testMaxAttempts(t *testing.T, h *harness) {
	rec := newRecorder()
	cfg := testDelivery()
	cfg.MaxAttempts = 3
	sub := newSubscriber(t, h.broker, "failing", "s", rec.handler(func(_ *pingv1.PingRequest, info pubsub.MessageInfo) error {
		return fmt.Errorf("boom %d", info.Attempt)
	}), pubsub.WithDelivery(cfg))
	Start(t, sub)
	if err := h.publisher(t, h.broker, "failing").Publish(t.Context(), &pingv1.PingRequest{Number: 1}, pubsub.WithMessageID("f")); err != nil {
		t.Fatal(err)
	}
	dl := waitDeadLetters(t, h.broker, "failing", "s", 1)[0]
	if dl.Reason != pubsub.ReasonMaxAttempts || dl.Attempts != 3 || dl.Error != "boom 3" {
		t.Errorf("dead letter: reason %q, attempts %d, error %q; want %q, 3, %q", dl.Reason, dl.Attempts, dl.Error, pubsub.ReasonMaxAttempts, "boom 3")
	}
	if n := len(rec.callsOf("f")); n != 3 {
		t.Errorf("handled %d times, want 3", n)
	}
	if len(deadLetters(t, h.broker, "failing", "other")) != 0 || len(deadLetters(t, h.broker, "other", "")) != 0 {
		t.Error("DeadLetters lists the dead letter under another subscription or topic")
	}
	if all := deadLetters(t, h.broker, "", ""); len(all) != 1 {
		t.Errorf("DeadLetters(\"\", \"\") lists %d dead letters, want 1", len(all))
	}
}

func testPermanent(t *testing.T, h *harness) {
	rec := newRecorder()
	sub := newSubscriber(t, h.broker, "perm", "s", rec.handler(func(m *pingv1.PingRequest, _ pubsub.MessageInfo) error {
		if m.GetNumber() == 1 {
			return pubsub.Permanent(errors.New("cannot process"))
		}
		return connect.NewError(connect.CodeInvalidArgument, errors.New("bad field"))
	}), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "perm")
	for i := range 2 {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, dl := range waitDeadLetters(t, h.broker, "perm", "s", 2) {
		if dl.Reason != pubsub.ReasonPermanent || dl.Attempts != 1 {
			t.Errorf("dead letter %s: reason %q after %d attempts, want %q after 1", dl.Message.ID, dl.Reason, dl.Attempts, pubsub.ReasonPermanent)
		}
		if n := len(rec.callsOf(dl.Message.ID)); n != 1 {
			t.Errorf("message %s handled %d times, want 1", dl.Message.ID, n)
		}
	}
}
