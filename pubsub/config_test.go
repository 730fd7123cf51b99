package pubsub_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

func TestValidateNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		topic   string
		sub     string
		wantErr string
	}{
		{name: "valid", topic: "profiles.changed", sub: "audit-log_2"},
		{name: "empty topic", topic: "", sub: "s", wantErr: "topic is empty"},
		{name: "wildcard", topic: "profiles.*", sub: "s", wantErr: `"*" is a wildcard, and a topic is one concrete name`},
		{name: "tail wildcard", topic: "orders.>", sub: "s", wantErr: "subscribe once per topic"},
		{name: "amqp wildcard", topic: "orders.#", sub: "s", wantErr: `"#" is a wildcard`},
		{name: "star in a token", topic: "orders.a*", sub: "s", wantErr: `token "a*" may hold only`},
		{name: "mqtt wildcard", topic: "orders/+", sub: "s", wantErr: `topic "orders/+": "+" is a wildcard, and a topic is one concrete name, which a publisher and each subscriber name whole: subscribe once per topic (a subscriber per topic, each with its message type), or publish the related events to one topic with a message that holds them (a oneof); and separate a topic's tokens with '.', not '/'`},
		{name: "mqtt multi-level wildcard", topic: "shop.orders/#", sub: "s", wantErr: `"#" is a wildcard`},
		{name: "slash separator", topic: "orders/created", sub: "s", wantErr: `topic "orders/created": separate a topic's tokens with '.', not '/', as in "orders.created"`},
		{name: "slash and other bad bytes", topic: "orders/cr eated", sub: "s", wantErr: `topic "orders/cr eated": separate a topic's tokens with '.', not '/'; written with '.', topic "orders.cr eated": token "cr eated" may hold only ASCII letters`},
		{name: "leading slash", topic: "/orders/created", sub: "s", wantErr: `topic "/orders/created": separate a topic's tokens with '.', not '/', as in "orders.created"`},
		{name: "trailing slash", topic: "shop.orders/", sub: "s", wantErr: `topic "shop.orders/": separate a topic's tokens with '.', not '/', as in "shop.orders"`},
		{name: "double slash", topic: "orders//created", sub: "s", wantErr: `topic "orders//created": separate a topic's tokens with '.', not '/'; written with '.', topic "orders..created" has an empty token`},
		{name: "double dot", topic: "a..b", sub: "s", wantErr: "empty token"},
		{name: "reserved", topic: "_pubsub.x", sub: "s", wantErr: "reserved"},
		{name: "space", topic: "a b", sub: "s", wantErr: "ASCII letters"},
		{name: "dotted subscription", topic: "t", sub: "a.b", wantErr: `subscription name "a.b"`},
		{name: "empty subscription", topic: "t", sub: "", wantErr: "subscription name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := errors.Join(pubsub.ValidateTopic(tc.topic), pubsub.ValidateSubscription(tc.sub))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestProcedures(t *testing.T) {
	t.Parallel()
	if got := pubsub.Procedure("profiles.changed", "audit"); got != "/profiles.changed/audit" {
		t.Errorf("Procedure = %q", got)
	}
	if got := pubsub.PublishProcedure("profiles.changed"); got != "/profiles.changed/publish" {
		t.Errorf("PublishProcedure = %q", got)
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	b := pubsub.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2}
	for attempt, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 100 {
			d := b.Delay(attempt)
			lo := time.Duration(float64(base) * 0.8)
			hi := min(time.Duration(float64(base)*1.2), b.Max)
			if d < lo || d > hi {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", attempt, d, lo, hi)
			}
		}
	}
	exact := pubsub.Backoff{Initial: time.Second, Jitter: -1}
	if d := exact.Delay(3); d != 4*time.Second {
		t.Errorf("Delay(3) without jitter = %v, want 4s", d)
	}
	var zero pubsub.Backoff
	if d := zero.Delay(100); d > pubsub.DefaultBackoffMax {
		t.Errorf("default Delay(100) = %v, want at most %v", d, pubsub.DefaultBackoffMax)
	}
}

// TestSubscriberBackoffWithoutJitter checks the delays a subscriber
// schedules, with its defaults applied, when jitter is turned off: exact.
func TestSubscriberBackoffWithoutJitter(t *testing.T) {
	t.Parallel()
	b := mem.New()
	t.Cleanup(func() { _ = b.Close() })
	cfg := pubsub.DeliveryConfig{Backoff: pubsub.Backoff{Initial: 50 * time.Millisecond, Jitter: -1}}
	sub, err := pubsub.NewSubscriber(b, "t", "s", func(context.Context, *pingv1.PingRequest) error { return nil }, pubsub.WithDelivery(cfg))
	if err != nil {
		t.Fatal(err)
	}
	for attempt, want := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		for range 20 {
			if got := sub.RetryDelay(attempt + 1); got != want {
				t.Fatalf("delay after attempt %d = %v, want exactly %v", attempt+1, got, want)
			}
		}
	}
}

func TestDeliveryConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  pubsub.DeliveryConfig
		want string // in the error; "" for valid
	}{
		{name: "zero", cfg: pubsub.DeliveryConfig{}},
		{name: "unlimited attempts", cfg: pubsub.DeliveryConfig{MaxAttempts: -1}},
		{name: "negative concurrency", cfg: pubsub.DeliveryConfig{Concurrency: -1}, want: "DeliveryConfig.Concurrency = -1"},
		{name: "negative prefetch", cfg: pubsub.DeliveryConfig{Prefetch: -2}, want: "DeliveryConfig.Prefetch = -2"},
		{name: "negative ack wait", cfg: pubsub.DeliveryConfig{AckWait: -time.Second}, want: "DeliveryConfig.AckWait = -1s"},
		{name: "ack wait of a typo", cfg: pubsub.DeliveryConfig{AckWait: time.Millisecond}, want: "DeliveryConfig.AckWait = 1ms: must be at least 100ms"},
		{name: "shortest ack wait", cfg: pubsub.DeliveryConfig{AckWait: 100 * time.Millisecond}},
		// Prefetch does not bound the handlers (see the conformance
		// suite's PrefetchBelowConcurrency): any positive value goes.
		{name: "prefetch below concurrency", cfg: pubsub.DeliveryConfig{Concurrency: 8, Prefetch: 2}},
		{name: "prefetch below the default concurrency", cfg: pubsub.DeliveryConfig{Prefetch: 1}},
		{name: "negative drain", cfg: pubsub.DeliveryConfig{DrainTimeout: -time.Second}, want: "DeliveryConfig.DrainTimeout"},
		{name: "small multiplier", cfg: pubsub.DeliveryConfig{Backoff: pubsub.Backoff{Multiplier: 0.5}}, want: "Backoff.Multiplier = 0.5"},
		{name: "big jitter", cfg: pubsub.DeliveryConfig{Backoff: pubsub.Backoff{Jitter: 1.5}}, want: "Backoff.Jitter = 1.5"},
		{name: "max below initial", cfg: pubsub.DeliveryConfig{Backoff: pubsub.Backoff{Initial: time.Minute, Max: time.Second}}, want: "Backoff.Max = 1s is less than Backoff.Initial = 1m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	if pubsub.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	base := connect.NewError(connect.CodeNotFound, errors.New("gone"))
	err := pubsub.Permanent(base)
	if !pubsub.IsPermanent(err) || !pubsub.IsPermanent(errors.Join(errors.New("x"), err)) {
		t.Error("IsPermanent does not see the mark")
	}
	if pubsub.IsPermanent(base) {
		t.Error("IsPermanent(unmarked) = true")
	}
	if connect.CodeOf(err) != connect.CodeNotFound || err.Error() != base.Error() || !errors.Is(err, base) {
		t.Errorf("Permanent changed the error: code %v, text %q", connect.CodeOf(err), err)
	}
}
