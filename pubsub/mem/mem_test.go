package mem_test

import (
	"testing"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	pubsubtest.Run(t, pubsubtest.Features{System: "mem"}, func(tb testing.TB) pubsubtest.Backend {
		b := mem.New()
		tb.Cleanup(func() { _ = b.Close() })
		return pubsubtest.Backend{Connect: func(testing.TB) pubsub.Broker { return b }}
	})
}
