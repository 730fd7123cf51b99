package pubsub_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// index is a projection kept in memory, built from events: the state that
// WithReplay builds again at each start.
type index struct {
	mu    sync.Mutex
	texts []string
}

func (x *index) onPing(_ context.Context, msg *pingv1.PingRequest) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.texts = append(x.texts, msg.GetText())
	slices.Sort(x.texts)
	return nil
}

// A projection in memory, built from the topic's history at each start:
// with WithReplay, every instance receives every message, beginning with
// the oldest the broker retains, and the subscriber's Check (its
// readiness) fails until the messages of its start are handled. In a
// service, register sub.Check as a health check, so that the instance
// serves only once its index is built.
func ExampleWithReplay() {
	broker := mem.New() // or natsjs.New(ctx, natsjs.Config{})
	defer broker.Close()
	pub, _ := pubsub.NewPublisher[pingv1.PingRequest](broker, "profiles")
	for _, name := range []string{"grace", "ada"} { // before the instance starts
		_ = pub.Publish(context.Background(), &pingv1.PingRequest{Text: name})
	}

	for start := 1; start <= 2; start++ { // the instance, started twice
		idx := &index{}
		sub, err := pubsub.NewSubscriber(broker, "profiles", "search-index", idx.onPing, pubsub.WithReplay())
		if err != nil {
			fmt.Println(err)
			return
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- sub.Run(ctx) }()
		for sub.Check(context.Background()) != nil { // readiness: NOT_SERVING until caught up
			time.Sleep(time.Millisecond)
		}
		idx.mu.Lock()
		fmt.Printf("start %d, ready: %v\n", start, idx.texts)
		idx.mu.Unlock()
		if start == 1 {
			_ = pub.Publish(context.Background(), &pingv1.PingRequest{Text: "linus"})
		}
		stop()
		<-done
	}
	// Output:
	// start 1, ready: [ada grace]
	// start 2, ready: [ada grace linus]
}
