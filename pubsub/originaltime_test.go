package pubsub_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// TestOriginalTimeOnlyFromRedrives: HeaderOriginalTime, which a re-drive
// carries from its dead letter, gives no other message another time. A
// publish drops it (set by the chain, as when a handler copies the headers
// of a re-driven message into a new publish), so MessageInfo.Time is when
// the broker stored the message; a value that a producer outside pubsub
// wrote, no time or a later one, is ignored, and the dead letter keeps the
// broker's time in its place for the re-drive.
func TestOriginalTimeOnlyFromRedrives(t *testing.T) {
	t.Parallel()
	const forged = "2001-02-03T04:05:06Z"
	setByChain := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set(pubsub.HeaderOriginalTime, forged)
			return next(ctx, req)
		}
	})
	data, err := proto.Marshal(&pingv1.PingRequest{Text: "outside"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		publish func(t *testing.T, b *mem.Broker, topic string)
	}{
		{name: "set by the chain", publish: func(t *testing.T, b *mem.Broker, topic string) {
			pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, topic, pubsub.WithClientOptions(connect.WithInterceptors(setByChain)))
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(t.Context(), &pingv1.PingRequest{}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "not a time", publish: publishOutside(data, "yesterday")},
		{name: "later than the broker's", publish: publishOutside(data, "2999-01-01T00:00:00Z")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := mem.New()
			handled := make(chan pubsub.MessageInfo, 1)
			sub, err := pubsub.NewSubscriber(b, "times", "s", func(ctx context.Context, _ *pingv1.PingRequest) error {
				info, _ := pubsub.MessageInfoFrom(ctx)
				handled <- info
				return pubsub.Permanent(errors.New("dead-letter it"))
			})
			if err != nil {
				t.Fatal(err)
			}
			pubsubtest.Start(t, sub)
			before := time.Now()
			tc.publish(t, b, "times")
			var info pubsub.MessageInfo
			select {
			case info = <-handled:
			case <-time.After(time.Minute):
				t.Fatal("message not handled")
			}
			if info.Time.Before(before.Add(-time.Second)) || info.Time.After(time.Now()) {
				t.Errorf("MessageInfo.Time = %v (header %q), want when the broker stored the message, after %v", info.Time, info.Header.Get(pubsub.HeaderOriginalTime), before)
			}
			if tc.name == "set by the chain" && info.Header.Get(pubsub.HeaderOriginalTime) != "" {
				t.Errorf("published message carries %s: %q, want it dropped", pubsub.HeaderOriginalTime, info.Header.Get(pubsub.HeaderOriginalTime))
			}
			var kept string
			pubsubtest.WaitFor(t, "the dead letter", func() bool {
				for dl, err := range b.DeadLetters(t.Context(), "times", "s") {
					if err != nil {
						t.Fatal(err)
					}
					kept = dl.Message.Header.Get(pubsub.HeaderOriginalTime)
					return true
				}
				return false
			})
			if at, err := time.Parse(time.RFC3339Nano, kept); err != nil || !at.Equal(info.Time) {
				t.Errorf("dead letter's %s = %q, want the broker's time %v", pubsub.HeaderOriginalTime, kept, info.Time)
			}
		})
	}
}

// publishOutside returns a publish as a producer outside pubsub makes it,
// of data with a HeaderOriginalTime of original.
func publishOutside(data []byte, original string) func(*testing.T, *mem.Broker, string) {
	return func(t *testing.T, b *mem.Broker, topic string) {
		publishRaw(t, b, &pubsub.Message{ID: "outside", Topic: topic, Data: data, Header: http.Header{
			pubsub.HeaderContentType:  {pubsub.ContentTypeProto},
			pubsub.HeaderMessageType:  {"connectkit.ping.v1.PingRequest"},
			pubsub.HeaderOriginalTime: {original},
		}})
	}
}
