package natsjs_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"google.golang.org/protobuf/proto"
)

// A subscription's handled message ids in a JetStream key-value bucket,
// which every instance of the subscription shares and which outlives
// restarts: pubsub.Idempotent then acknowledges a message delivered again,
// whichever instance gets it, without handling it twice.
func ExampleNewIdempotencyStore() {
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
	defer bus.Close()

	// Keep keys longer than a message can take to come again: AckWait
	// plus the backoffs of its attempts.
	store, err := natsjs.NewIdempotencyStore(ctx, bus, "ledger_handled", 24*time.Hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	handled := make(chan string, 3)
	handle := pubsub.Idempotent(store, func(ctx context.Context, msg *pingv1.PingRequest) error {
		info, _ := pubsub.MessageInfoFrom(ctx)
		handled <- info.ID + ": " + msg.GetText()
		return nil
	})
	sub, err := pubsub.NewSubscriber(bus, "payments", "ledger", handle,
		pubsub.WithDelivery(pubsub.DeliveryConfig{Concurrency: 1})) // in order
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()

	pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, "payments")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pub.Publish(ctx, &pingv1.PingRequest{Text: "charge"}, pubsub.WithMessageID("payment-1")); err != nil {
		fmt.Println(err)
		return
	}
	// A copy of payment-1 that JetStream's duplicate window does not drop,
	// as a producer that publishes it again later sends it.
	data, err := proto.Marshal(&pingv1.PingRequest{Text: "charge again"})
	if err != nil {
		fmt.Println(err)
		return
	}
	confirmation, err := bus.Publish(ctx, &pubsub.Message{ID: "payment-1", Topic: "payments", Data: data,
		Header: http.Header{
			pubsub.HeaderContentType: {pubsub.ContentTypeProto},
			pubsub.HeaderMessageType: {string(proto.MessageName(&pingv1.PingRequest{}))},
		}})
	if err == nil {
		err = confirmation.Wait(ctx)
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pub.Publish(ctx, &pingv1.PingRequest{Text: "charge"}, pubsub.WithMessageID("payment-2")); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-handled)
	fmt.Println(<-handled) // the copy of payment-1 was acknowledged unhandled
	stop()
	fmt.Println("Run:", <-done)
	// Output:
	// payment-1: charge
	// payment-2: charge
	// Run: <nil>
}
