package mem_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// This example is the body of a unit test of your own subscriber: the
// in-memory broker has natsjs's delivery semantics without a server. A
// short Backoff and a low MaxAttempts make a failing message reach the
// dead letters within the test. pubsubtest.Start and pubsubtest.WaitFor
// do the waiting in a real test.
func ExampleNew() {
	broker := mem.New()
	defer broker.Close()

	handled := make(chan string, 1)
	handler := func(_ context.Context, msg *pingv1.PingRequest) error { // the code under test
		if msg.GetText() == "" {
			return errors.New("no text")
		}
		handled <- msg.GetText()
		return nil
	}
	sub, err := pubsub.NewSubscriber(broker, "pings", "printer", handler,
		pubsub.WithDelivery(pubsub.DeliveryConfig{MaxAttempts: 2, Backoff: pubsub.Backoff{Initial: time.Millisecond}}))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()

	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, "pings")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, text := range []string{"hello", ""} {
		if err := pub.Publish(ctx, &pingv1.PingRequest{Text: text}); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println("handled:", <-handled)

	var dead []*pubsub.DeadLetter
	for len(dead) == 0 { // the empty one fails twice, then is dead-lettered
		time.Sleep(time.Millisecond)
		for dl, err := range broker.DeadLetters(ctx, "pings", "printer") {
			if err != nil {
				fmt.Println(err)
				return
			}
			dead = append(dead, dl)
		}
	}
	fmt.Println("dead letter:", dead[0].Reason, dead[0].Attempts, dead[0].Error)

	stop()
	fmt.Println("Run:", <-done)
	// Output:
	// handled: hello
	// dead letter: max_attempts 2 no text
	// Run: <nil>
}
