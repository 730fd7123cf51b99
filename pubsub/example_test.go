package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// A publisher and a subscriber of one message type on one topic. In a
// service, pass srv.ClientOptions() and srv.HandlerOptions() with
// pubsub.WithClientOptions and pubsub.WithHandlerOptions, and run the
// subscriber with srv.Go(sub.Run).
func Example() {
	broker := mem.New() // or natsjs.New(ctx, natsjs.Config{})
	defer broker.Close()

	received := make(chan string)
	sub, err := pubsub.NewSubscriber(broker, "pings", "printer", func(ctx context.Context, msg *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		received <- fmt.Sprintf("%s/%s attempt %d: %s", info.Topic, info.Subscription, info.Attempt, msg.GetText())
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error)
	go func() { done <- sub.Run(ctx) }()

	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, "pings")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pub.Publish(context.Background(), &pingv1.PingRequest{Text: "hello"}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-received)
	err = pub.Publish(context.Background(), &pingv1.PingRequest{Number: -1})
	fmt.Println(err)

	stop()
	fmt.Println("Run:", <-done)
	// Output:
	// pings/printer attempt 1: hello
	// invalid_argument: validation error: number: must be greater than or equal to 0
	// Run: <nil>
}

// Dead letters: a handler that cannot process a message marks its error
// permanent; once fixed, the dead letter is re-driven to its subscription.
func ExampleBroker_redrive() {
	broker := mem.New()
	defer broker.Close()

	var fixed atomic.Bool
	handled := make(chan int64)
	sub, _ := pubsub.NewSubscriber(broker, "orders", "billing", func(ctx context.Context, msg *pingv1.PingRequest) error {
		if !fixed.Load() {
			return pubsub.Permanent(errors.New("unknown currency"))
		}
		handled <- msg.GetNumber()
		return nil
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = sub.Run(ctx) }()

	pub, _ := pubsub.NewPublisher[pingv1.PingRequest](broker, "orders")
	_ = pub.Publish(context.Background(), &pingv1.PingRequest{Number: 42}, pubsub.WithMessageID("order-42"))

	var dl *pubsub.DeadLetter
	for dl == nil { // the subscriber dead-letters the message soon
		time.Sleep(time.Millisecond)
		for d := range broker.DeadLetters(context.Background(), "orders", "billing") {
			dl = d
		}
	}
	fmt.Println(dl.Message.ID, dl.Reason, dl.Attempts, dl.Error)

	fixed.Store(true)
	if err := broker.Redrive(context.Background(), dl); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("handled", <-handled)
	// Output:
	// order-42 permanent 1 unknown currency
	// handled 42
}
