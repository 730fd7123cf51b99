package mem_test

import (
	"testing"

	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

// BenchmarkMem runs pubsub's benchmarks on the in-memory broker.
func BenchmarkMem(b *testing.B) {
	broker := mem.New()
	b.Cleanup(func() { _ = broker.Close() })
	pubsubtest.Bench(b, broker)
}
