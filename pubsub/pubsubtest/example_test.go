package pubsubtest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/connectkit/connectkit/internal/exampletest"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// A test of your own subscriber: Start runs it until the test ends (and
// fails the test if Run does not return nil), WaitFor waits for what the
// handler does. Here the handler under test keeps the texts it receives.
func ExampleStart() {
	exampletest.Run(func(t testing.TB) { // in your tests: func TestPrinter(t *testing.T) {
		broker := mem.New()
		t.Cleanup(func() { _ = broker.Close() })
		var mu sync.Mutex
		var texts []string
		sub, err := pubsub.NewSubscriber(broker, "pings", "printer", func(_ context.Context, msg *pingv1.PingRequest) error {
			mu.Lock()
			defer mu.Unlock()
			texts = append(texts, msg.GetText())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		pubsubtest.Start(t, sub) // returns once the subscriber consumes

		pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, "pings")
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Text: "hello"}); err != nil {
			t.Fatal(err)
		}
		pubsubtest.WaitFor(t, "the handler to get hello", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(texts) == 1 && texts[0] == "hello"
		})
		fmt.Println("handled:", texts[0])
	})
	// Output: handled: hello
}
