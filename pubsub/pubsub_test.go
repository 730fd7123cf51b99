package pubsub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestConstructorErrors(t *testing.T) {
	t.Parallel()
	b := mem.New()
	handle := func(context.Context, *pingv1.PingRequest) error { return nil }
	for name, err := range map[string]error{
		"publisher nil broker": func() error { _, err := pubsub.NewPublisher[pingv1.PingRequest](nil, "t"); return err }(),
		"publisher bad topic":  func() error { _, err := pubsub.NewPublisher[pingv1.PingRequest](b, "t.>"); return err }(),
		"publisher not proto":  func() error { _, err := pubsub.NewPublisher[struct{ A int }](b, "t"); return err }(),
		"subscriber nil handler": func() error {
			_, err := pubsub.NewSubscriber[pingv1.PingRequest](b, "t", "s", nil)
			return err
		}(),
		"subscriber bad name": func() error { _, err := pubsub.NewSubscriber(b, "t", "a b", handle); return err }(),
		"subscriber bad config": func() error {
			_, err := pubsub.NewSubscriber(b, "t", "s", handle, pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: -1}))
			return err
		}(),
	} {
		if err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}

// A pointer type parameter, the natural slip, is named with its fix.
func TestPublisherOfPointerNamesTheStruct(t *testing.T) {
	t.Parallel()
	_, err := pubsub.NewPublisher[*pingv1.PingRequest](mem.New(), "t")
	if want := "give the generated struct, pingv1.PingRequest"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
}

func TestMessageInfoOutsideHandler(t *testing.T) {
	t.Parallel()
	if _, ok := pubsub.MessageInfoFrom(context.Background()); ok {
		t.Error("MessageInfoFrom(Background) = ok")
	}
}

// TestInterceptorsSeeMessageInfo checks what the interceptors learn about
// publishes and deliveries, and that their view of the outcome is pubsub's.
func TestInterceptorsSeeMessageInfo(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []msgctx.Info
	var outcomes []msgctx.Outcome
	observe := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			res, err := next(ctx, req)
			if info := msgctx.FromContext(ctx); info != nil {
				mu.Lock()
				seen = append(seen, *info)
				if info.Operation == msgctx.Process {
					outcomes = append(outcomes, info.Outcome(err))
				}
				mu.Unlock()
			}
			return res, err
		}
	})
	b := mem.New()
	sub, err := pubsub.NewSubscriber(b, "infos", "s", func(context.Context, *pingv1.PingRequest) error {
		return pubsub.Permanent(errors.New("no"))
	}, pubsub.WithHandlerOptions(connect.WithInterceptors(observe)))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "infos", pubsub.WithClientOptions(connect.WithInterceptors(observe)))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}, pubsub.WithMessageID("id-1")); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "two calls through the interceptor", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 2 })
	ended := time.Now()
	want := []msgctx.Info{
		{Operation: msgctx.Publish, System: "mem", Topic: "infos", MessageID: "id-1", MessageType: "connectkit.ping.v1.PingRequest"},
		{Operation: msgctx.Process, System: "mem", Topic: "infos", Subscription: "s", MessageID: "id-1", MessageType: "connectkit.ping.v1.PingRequest",
			Attempt: 1, MaxAttempts: pubsub.DefaultMaxAttempts, Permanent: true},
	}
	mu.Lock()
	defer mu.Unlock()
	// The delivery may end before the publish call returns: compare by
	// operation.
	slices.SortFunc(seen, func(a, b msgctx.Info) int { return strings.Compare(string(b.Operation), string(a.Operation)) })
	for i := range want {
		if seen[i].Server != nil {
			t.Errorf("%s: Server set, but mem has no server", seen[i].Operation)
		}
		seen[i].Server = nil // a func: not comparable
		// A delivery's chain starts at a clock reading of pubsub's, which
		// Logging and Metrics time it from; a publish has none.
		if start := seen[i].Start; seen[i].Operation == msgctx.Process && (start.Before(began) || start.After(ended)) {
			t.Errorf("delivery's Start %v, want between %v and %v", start, began, ended)
		} else if seen[i].Operation == msgctx.Publish && !start.IsZero() {
			t.Errorf("publish's Start %v, want zero", start)
		}
		seen[i].Start = time.Time{}
		if !reflect.DeepEqual(seen[i], want[i]) {
			t.Errorf("interceptor saw %+v, want %+v", seen[i], want[i])
		}
	}
	if len(outcomes) != 1 || outcomes[0] != msgctx.DeadLetter {
		t.Errorf("interceptor's outcome %v, want [dead_letter] like pubsub's", outcomes)
	}
}

// TestDeliveryRequest checks the request a delivery is to the handler
// chain: what connect's handler would give for a Connect POST, the
// message's headers, and the handler reached, with the headers the chain
// set, through an interceptor that replaces the request.
func TestDeliveryRequest(t *testing.T) {
	t.Parallel()
	type view struct {
		spec     connect.Spec
		protocol string
		method   string
		header   http.Header
		msg      any
	}
	seen := make(chan view, 1)
	observe := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			seen <- view{req.Spec(), req.Peer().Protocol, req.HTTPMethod(), req.Header().Clone(), req.Any()}
			req.Header().Set("X-Added", "by the chain")
			return next(ctx, req)
		}
	})
	replace := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			r := connect.NewRequest(req.Any().(*pingv1.PingRequest))
			maps.Copy(r.Header(), req.Header())
			r.Header().Set("X-Replaced", "yes")
			return next(ctx, r)
		}
	})
	handled := make(chan pubsub.MessageInfo, 1)
	b := mem.New()
	sub, err := pubsub.NewSubscriber(b, "requests", "s", func(ctx context.Context, msg *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		if msg.GetText() != "hello" {
			return pubsub.Permanent(fmt.Errorf("handler got %v", msg))
		}
		handled <- info
		return nil
	}, pubsub.WithHandlerOptions(connect.WithInterceptors(observe, replace)))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "requests")
	if err != nil {
		t.Fatal(err)
	}
	ctx, call := connect.NewClientContext(t.Context())
	call.RequestHeader().Set("X-Tenant", "acme")
	if err := pub.Publish(ctx, &pingv1.PingRequest{Text: "hello"}); err != nil {
		t.Fatal(err)
	}
	var v view
	select {
	case v = <-seen:
	case <-time.After(time.Minute):
		t.Fatal("no delivery reached the chain")
	}
	want := connect.Spec{StreamType: connect.StreamTypeUnary, Procedure: pubsub.Procedure("requests", "s")}
	if v.spec != want || v.protocol != connect.ProtocolConnect || v.method != http.MethodPost {
		t.Errorf("chain saw spec %+v, protocol %q, method %q; want %+v, %q, POST", v.spec, v.protocol, v.method, want, connect.ProtocolConnect)
	}
	if got := v.header.Get("Content-Type"); got != pubsub.ContentTypeProto {
		t.Errorf("Content-Type %q, want %q", got, pubsub.ContentTypeProto)
	}
	if got := v.header.Get("X-Tenant"); got != "acme" {
		t.Errorf("X-Tenant %q, want the publisher's acme", got)
	}
	if m, ok := v.msg.(*pingv1.PingRequest); !ok || m.GetText() != "hello" {
		t.Errorf("chain saw message %v", v.msg)
	}
	select {
	case info := <-handled:
		if got, replaced := info.Header.Get("X-Added"), info.Header.Get("X-Replaced"); got != "by the chain" || replaced != "yes" {
			t.Errorf("handler's MessageInfo.Header X-Added = %q, X-Replaced = %q; want the chain's", got, replaced)
		}
	case <-time.After(time.Minute):
		t.Fatal("handler not reached")
	}
}

// TestDetachedDeliveryReachesTheHandler checks that an interceptor that
// replaces both the request and the context still gets the message handled
// and acknowledged.
func TestDetachedDeliveryReachesTheHandler(t *testing.T) {
	t.Parallel()
	detach := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			return next(context.WithoutCancel(context.Background()), connect.NewRequest(req.Any().(*pingv1.PingRequest)))
		}
	})
	var handled atomic.Int32
	b := mem.New()
	sub, err := pubsub.NewSubscriber(b, "detached", "s", func(context.Context, *pingv1.PingRequest) error {
		handled.Add(1)
		return nil
	}, pubsub.WithHandlerOptions(connect.WithInterceptors(detach)))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "detached")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the handler", func() bool { return handled.Load() == 1 })
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := mem.New()
	for _, name := range []string{"a", "b"} { // two subscribers share the registry
		sub, err := pubsub.NewSubscriber(b, "counted", name, func(context.Context, *pingv1.PingRequest) error {
			return errors.New("always")
		}, pubsub.WithRegistry(reg), pubsub.WithDelivery(pubsub.DeliveryConfig{MaxAttempts: 3, Backoff: pubsub.Backoff{Initial: time.Millisecond}}))
		if err != nil {
			t.Fatal(err)
		}
		pubsubtest.Start(t, sub)
	}
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "counted", pubsub.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	dead := func(sub string) float64 {
		return counterValue(t, reg, "pubsub_dead_lettered_total", map[string]string{"topic": "counted", "subscription": sub, "reason": "max_attempts"})
	}
	pubsubtest.WaitFor(t, "a dead letter per subscription", func() bool { return dead("a") == 1 && dead("b") == 1 })
	if got := counterValue(t, reg, "pubsub_redelivered_total", map[string]string{"topic": "counted", "subscription": "a"}); got != 2 {
		t.Errorf("pubsub_redelivered_total{subscription=a} = %v, want 2", got)
	}
}

// The counters operators alert on exist at 0 from the start: a series that
// first appears at 1 is no increase to Prometheus' increase() or rate(), so
// an alert such as increase(pubsub_dead_lettered_total[10m]) > 0 would miss
// the first dead letter of every process.
func TestMetricsStartAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := mem.New()
	handle := func(context.Context, *pingv1.PingRequest) error { return nil }
	if _, err := pubsub.NewSubscriber(b, "quiet", "audit", handle, pubsub.WithRegistry(reg)); err != nil {
		t.Fatal(err)
	}
	if _, err := pubsub.NewPublisher[pingv1.PingRequest](b, "quiet", pubsub.WithRegistry(reg)); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := []string{}
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if m.GetCounter().GetValue() == 0 {
				got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = true
			}
		}
	}
	for _, want := range []string{
		"pubsub_redelivered_total{subscription=audit,topic=quiet}",
		"pubsub_given_back_total{subscription=audit,topic=quiet}",
		"pubsub_late_copies_total{subscription=audit,topic=quiet}",
		"pubsub_ack_errors_total{subscription=audit,topic=quiet}",
		"pubsub_dead_lettered_total{reason=max_attempts,subscription=audit,topic=quiet}",
		"pubsub_dead_lettered_total{reason=permanent,subscription=audit,topic=quiet}",
		"pubsub_dead_lettered_total{reason=type_mismatch,subscription=audit,topic=quiet}",
		"pubsub_dead_lettered_total{reason=undecodable,subscription=audit,topic=quiet}",
		"pubsub_publish_errors_total{topic=quiet}",
		"pubsub_dead_letter_errors_total{code=resource_exhausted,subscription=audit,topic=quiet}",
		"pubsub_dead_letter_errors_total{code=unavailable,subscription=audit,topic=quiet}",
	} {
		if !got[want] {
			t.Errorf("no %s at 0 before any message; have %v", want, slices.Sorted(maps.Keys(got)))
		}
	}
}

// counterValue returns the value of the counter of reg with name and labels,
// or 0.
func counterValue(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestPublishNeedsConnectProtocol(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]connect.ClientOption{"gRPC": connect.WithGRPC(), "gRPC-Web": connect.WithGRPCWeb()} {
		_, err := pubsub.NewPublisher[pingv1.PingRequest](mem.New(), "grpc", pubsub.WithClientOptions(opt))
		if err == nil || !strings.Contains(err.Error(), "Connect protocol") {
			t.Errorf("NewPublisher with %s = %v, want an error naming the Connect protocol", name, err)
		}
	}
}

// TestPublishRequest checks the request a publish is to the client chain:
// what connect's client would give for a Connect call, without the protocol
// headers on the message; the headers of a connect.NewClientContext's call
// info and of the chain reaching the message; and a publish through an
// interceptor that replaces the request.
func TestPublishRequest(t *testing.T) {
	t.Parallel()
	type view struct {
		spec   connect.Spec
		peer   connect.Peer
		method string
		header http.Header
	}
	seen := make(chan view, 3)
	observe := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			v := view{req.Spec(), req.Peer(), req.HTTPMethod(), req.Header().Clone()}
			req.Header().Set("X-Added", "by the chain")
			res, err := next(ctx, req)
			v.method += "," + req.HTTPMethod()
			seen <- v
			return res, err
		}
	})
	replace := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if req.Any().(*pingv1.PingRequest).GetNumber() != 3 {
				return next(ctx, req)
			}
			r := connect.NewRequest(req.Any().(*pingv1.PingRequest))
			maps.Copy(r.Header(), req.Header())
			return next(ctx, r)
		}
	})
	b := mem.New()
	handled := make(chan pubsub.MessageInfo, 3)
	sub, err := pubsub.NewSubscriber(b, "publishes", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		handled <- info
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "publishes", pubsub.WithClientOptions(connect.WithInterceptors(observe, replace)))
	if err != nil {
		t.Fatal(err)
	}
	infoCtx, call := connect.NewClientContext(t.Context())
	call.RequestHeader().Set("X-Tenant", "acme")
	for i, ctx := range []context.Context{t.Context(), infoCtx, t.Context()} {
		if err := pub.Publish(ctx, &pingv1.PingRequest{Number: int64(i + 1)}); err != nil {
			t.Fatalf("publish %d: %v", i+1, err)
		}
		v := <-seen
		want := connect.Spec{StreamType: connect.StreamTypeUnary, Procedure: pubsub.PublishProcedure("publishes"), IsClient: true}
		if v.spec != want || v.peer.Protocol != connect.ProtocolConnect || v.peer.Addr != "mem" || v.method != map[bool]string{false: ",POST", true: ","}[ctx == infoCtx] {
			t.Errorf("publish %d: chain saw spec %+v, peer %+v, method %q before and after the call; want %+v, connect to mem, none then POST (none through connect's client)", i+1, v.spec, v.peer, v.method, want)
		}
		if ct, typ := v.header.Get(pubsub.HeaderContentType), v.header.Get(pubsub.HeaderMessageType); ct != pubsub.ContentTypeProto || typ != "connectkit.ping.v1.PingRequest" {
			t.Errorf("publish %d: chain saw Content-Type %q, %s %q", i+1, ct, pubsub.HeaderMessageType, typ)
		}
		var info pubsub.MessageInfo
		select {
		case info = <-handled:
		case <-time.After(time.Minute):
			t.Fatalf("publish %d not handled", i+1)
		}
		for _, k := range []string{"Connect-Protocol-Version", "User-Agent", "Accept-Encoding", "Connect-Accept-Encoding"} {
			if got := info.Header.Get(k); got != "" {
				t.Errorf("publish %d: message carries %s: %q", i+1, k, got)
			}
		}
		if got := info.Header.Get("X-Added"); got != "by the chain" {
			t.Errorf("publish %d: message's X-Added = %q, want the chain's", i+1, got)
		}
		if got, want := info.Header.Get("X-Tenant"), map[bool]string{true: "acme"}[ctx == infoCtx]; got != want {
			t.Errorf("publish %d: message's X-Tenant = %q, want %q", i+1, got, want)
		}
	}
}

// TestDetachedPublishFails checks that a publish whose interceptor replaces
// both the request and the context fails with an error that says so,
// rather than reaching the publisher's HTTP client or hanging.
func TestDetachedPublishFails(t *testing.T) {
	t.Parallel()
	detach := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(_ context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			return next(context.Background(), connect.NewRequest(req.Any().(*pingv1.PingRequest)))
		}
	})
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](mem.New(), "detached", pubsub.WithClientOptions(connect.WithInterceptors(detach)))
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), &pingv1.PingRequest{})
	if connect.CodeOf(err) != connect.CodeInternal || !strings.Contains(err.Error(), "replaced both the request and the context") {
		t.Errorf("Publish through a detaching interceptor = %v, want Internal naming the interceptor's doing", err)
	}
}

func TestIdempotent(t *testing.T) {
	t.Parallel()
	b := mem.New()
	var effects atomic.Int32
	handled := make(chan struct{}, 10)
	store := pubsub.NewMemoryIdempotencyStore(time.Hour, 0)
	sub, err := pubsub.NewSubscriber(b, "once", "s", pubsub.Idempotent(store, func(context.Context, *pingv1.PingRequest) error {
		effects.Add(1)
		return nil
	}), pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1}),
		pubsub.WithHandlerOptions(connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				defer func() { handled <- struct{}{} }()
				return next(ctx, req)
			}
		}))))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	// The same message delivered twice, as after a crash right after the
	// first handling: the broker does not deduplicate it.
	for range 2 {
		conf, err := b.Publish(t.Context(), &pubsub.Message{ID: "same", Topic: "once", Header: http.Header{pubsub.HeaderContentType: {pubsub.ContentTypeProto}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := conf.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	<-handled
	<-handled
	if n := effects.Load(); n != 1 {
		t.Errorf("effect ran %d times for one message delivered twice, want 1", n)
	}
}

func TestMemoryIdempotencyStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pubsub.NewMemoryIdempotencyStore(time.Hour, 2)
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Record(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	for k, want := range map[string]bool{"a": false, "b": true, "c": true, "d": false} {
		if got, _ := s.Seen(ctx, k); got != want {
			t.Errorf("Seen(%q) = %v, want %v (at most 2 keys, oldest forgotten)", k, got, want)
		}
	}
	expiring := pubsub.NewMemoryIdempotencyStore(time.Nanosecond, 0)
	_ = expiring.Record(ctx, "k")
	pubsubtest.WaitFor(t, "the key to expire", func() bool { seen, _ := expiring.Seen(ctx, "k"); return !seen })
	if _, err := s.Seen(ctx, ""); err == nil {
		t.Error("Seen(\"\") = nil error")
	}
}

// TestMemoryIdempotencyStoreRefusesNoTTL: a ttl of 0 or less, which would
// remember nothing and make Idempotent a silent no-op, panics with a message
// naming the ttl, as natsjs.NewIdempotencyStore refuses it with an error.
func TestMemoryIdempotencyStoreRefusesNoTTL(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{0, -time.Second} {
		t.Run(ttl.String(), func(t *testing.T) {
			t.Parallel()
			defer func() {
				p := recover()
				if msg, _ := p.(string); !strings.Contains(msg, "ttl must be positive") || !strings.Contains(msg, ttl.String()) {
					t.Errorf("NewMemoryIdempotencyStore(%v, 0) panicked with %v, want a message naming the ttl", ttl, p)
				}
			}()
			pubsub.NewMemoryIdempotencyStore(ttl, 0)
		})
	}
}

// unresponsiveBroker stands for a broker that stopped answering (a network
// partition): its consumers' Drain and Close wait for their context.
type unresponsiveBroker struct{ pubsub.Broker }

func (b unresponsiveBroker) Subscribe(ctx context.Context, cfg pubsub.ConsumerConfig, deliver func(pubsub.Delivery)) (pubsub.Consumer, error) {
	return unresponsiveConsumer{}, nil
}

type unresponsiveConsumer struct{}

func (unresponsiveConsumer) Drain(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (unresponsiveConsumer) Close(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// TestRunStopsWithinDrainTimeout: a subscriber whose broker does not answer
// returns from Run within DrainTimeout plus a second, the flush of its
// verdicts included, not after DrainTimeout twice (which would outlast
// kit's KIT_SHUTDOWN_TIMEOUT with the defaults).
func TestRunStopsWithinDrainTimeout(t *testing.T) {
	t.Parallel()
	const drain = 3 * time.Second
	var logs syncBuffer
	sub, err := pubsub.NewSubscriber(unresponsiveBroker{mem.New()}, "t", "s",
		func(context.Context, *pingv1.PingRequest) error { return nil },
		pubsub.WithDelivery(pubsub.DeliveryConfig{DrainTimeout: drain}), pubsub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	stop := pubsubtest.Start(t, sub)
	start := time.Now()
	stop()
	// Fixed, Run returns about a second after DrainTimeout; broken, after
	// DrainTimeout twice (6s). The bound halves the gap, leaving a second
	// of slack to a loaded machine (it left half a second).
	if took := time.Since(start); took > drain+2*time.Second {
		t.Errorf("Run returned %v after its context was cancelled, want at most DrainTimeout (%v) and a second", took.Round(time.Millisecond), drain)
	}
	// No handler ran: no warning that some were still running.
	if strings.Contains(logs.String(), "handlers still running") {
		t.Errorf("log = %s, want no warning about handlers still running", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// faultyBroker's consumers report the fault set in err (see pubsub.Consumer).
type faultyBroker struct {
	pubsub.Broker
	err *atomic.Pointer[error]
}

func (b faultyBroker) Subscribe(ctx context.Context, cfg pubsub.ConsumerConfig, deliver func(pubsub.Delivery)) (pubsub.Consumer, error) {
	c, err := b.Broker.Subscribe(ctx, cfg, deliver)
	if err != nil {
		return nil, err
	}
	return faultyConsumer{c, b.err}, nil
}

type faultyConsumer struct {
	pubsub.Consumer
	err *atomic.Pointer[error]
}

func (c faultyConsumer) Err() error {
	if err := c.err.Load(); err != nil {
		return *err
	}
	return nil
}

// A consumer that reports a fault (natsjs's, while it makes again a consumer
// the server lost) fails its subscriber's Check until the fault clears.
func TestCheckFailsWhileTheConsumerReportsAFault(t *testing.T) {
	t.Parallel()
	var fault atomic.Pointer[error]
	sub, err := pubsub.NewSubscriber(faultyBroker{mem.New(), &fault}, "t", "s",
		func(context.Context, *pingv1.PingRequest) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	if err := sub.Check(t.Context()); err != nil {
		t.Fatalf("Check = %v while consuming", err)
	}
	lost := errors.New("consumer lost; creating it again")
	fault.Store(&lost)
	if err := sub.Check(t.Context()); !errors.Is(err, lost) {
		t.Errorf("Check = %v while the consumer reports a fault, want it", err)
	}
	fault.Store(nil)
	if err := sub.Check(t.Context()); err != nil {
		t.Errorf("Check = %v once the fault cleared", err)
	}
}
