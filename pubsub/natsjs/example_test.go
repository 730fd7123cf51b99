package natsjs_test

import (
	"context"
	"fmt"
	"os"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// An embedded JetStream server, a publisher and a subscriber. In func main,
// the Config comes from natsjs.ConfigFromEnv, and the subscriber runs under
// kit with srv.Go(sub.Run).
func ExampleNew() {
	dir, err := os.MkdirTemp("", "natsjs-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	bus, err := natsjs.New(ctx, natsjs.Config{DataDir: dir}) // no URL: embedded
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bus.Close() // last: after the subscribers returned

	got := make(chan string, 1)
	sub, err := pubsub.NewSubscriber(bus, "pings", "printer", func(_ context.Context, msg *pingv1.PingRequest) error {
		got <- msg.GetText()
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "pings")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pub.Publish(ctx, &pingv1.PingRequest{Text: "hello"}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-got)
	stop()
	fmt.Println("Run:", <-done)
	// Output:
	// hello
	// Run: <nil>
}
