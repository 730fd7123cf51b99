package pubsub_test

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// PublishAsync hands a message to the broker and returns at once; its
// Future reports whether the broker stored it. Wait on every Future
// before relying on the messages (before acknowledging the message that
// caused them, in a handler), as Publish does for one.
func ExamplePublisher_PublishAsync() {
	broker := mem.New() // or natsjs.New(ctx, natsjs.Config{})
	defer broker.Close()
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, "pings")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	var futures []*pubsub.Future
	for i := range 3 {
		futures = append(futures, pub.PublishAsync(ctx, &pingv1.PingRequest{Number: int64(i)},
			pubsub.WithMessageID(fmt.Sprintf("ping-%d", i))))
	}
	// An invalid message fails its Future, not the others.
	futures = append(futures, pub.PublishAsync(ctx, &pingv1.PingRequest{Number: -1}, pubsub.WithMessageID("ping-bad")))
	for _, f := range futures {
		fmt.Println(f.ID(), f.Wait(ctx))
	}

	// PublishBatch does the same for a slice, and joins the errors.
	err = pub.PublishBatch(ctx, &pingv1.PingRequest{Number: 3}, &pingv1.PingRequest{Number: -4})
	fmt.Println(connect.CodeOf(err))
	// Output:
	// ping-0 <nil>
	// ping-1 <nil>
	// ping-2 <nil>
	// ping-bad invalid_argument: validation error: number: must be greater than or equal to 0
	// invalid_argument
}
