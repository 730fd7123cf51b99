package natsjs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/pubsubbench"
	"github.com/connectkit/connectkit/pubsub"
)

// BenchmarkReplayToReady measures how long a replaying subscriber takes to
// be ready (its Check passing) on a topic that holds b.N messages of about
// 100 bytes, per message, through kit's chain logging to a file
// (chain-kitlog) and through none: how a replay lengthens a start.
func BenchmarkReplayToReady(b *testing.B) {
	for _, chain := range pubsubbench.Chains {
		if chain.Name != "chain-kitlog" && chain.Name != "nochain" {
			continue
		}
		b.Run(chain.Name, func(b *testing.B) {
			broker := newEmbedded(b)
			topic := fmt.Sprintf("replay.bench%d", b.N)
			pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, topic)
			if err != nil {
				b.Fatal(err)
			}
			futures := make([]*pubsub.Future, b.N)
			for i := range futures {
				futures[i] = pub.PublishAsync(context.Background(), &pingv1.PingRequest{Number: int64(i), Text: "a profile changed: about a hundred bytes of payload, as an event of the example"})
			}
			for _, f := range futures {
				if err := f.Wait(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			sub, err := pubsub.NewSubscriber(broker, topic, "bench", func(context.Context, *pingv1.PingRequest) error { return nil },
				append(chain.PubsubOptions(b), pubsub.WithReplay())...)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			b.ResetTimer()
			go func() { done <- sub.Run(ctx) }()
			for sub.Check(context.Background()) != nil {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
