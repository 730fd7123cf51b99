package pubsub_test

import (
	"context"
	"testing"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

func TestSmoke(t *testing.T) {
	t.Parallel()
	b := mem.New()
	got := make(chan *pingv1.PingRequest, 1)
	sub, err := pubsub.NewSubscriber(b, "pings", "s1", func(ctx context.Context, m *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		t.Logf("info %+v", info)
		got <- m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sub.Run(ctx) }()
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "pings")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), &pingv1.PingRequest{Number: 42, Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), &pingv1.PingRequest{Number: -1}); err == nil {
		t.Fatal("want validation error")
	} else {
		t.Log(err)
	}
	m := <-got
	if m.GetNumber() != 42 {
		t.Fatal(m)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
