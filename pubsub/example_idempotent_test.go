package pubsub_test

import (
	"context"
	"fmt"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// Delivery is at least once: a message acknowledged just before a crash
// comes again, with the same id. Idempotent handles it once.
func ExampleIdempotent() {
	// No deduplication window, so that publishing an id twice stands for a
	// redelivery.
	broker := mem.New(mem.WithDuplicateWindow(0))
	defer broker.Close()

	seen := pubsub.NewMemoryIdempotencyStore(time.Hour, 0)
	handled := make(chan string, 3)
	handle := pubsub.Idempotent(seen, func(ctx context.Context, msg *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		handled <- info.ID
		return nil
	})
	sub, err := pubsub.NewSubscriber(broker, "payments", "ledger", handle,
		pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1})) // in order
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = sub.Run(ctx) }()

	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, "payments")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, id := range []string{"payment-1", "payment-1", "payment-2"} {
		if err := pub.Publish(ctx, &pingv1.PingRequest{}, pubsub.WithMessageID(id)); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println(<-handled)
	fmt.Println(<-handled) // payment-1's second delivery was acknowledged unhandled
	// Output:
	// payment-1
	// payment-2
}
