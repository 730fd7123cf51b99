// Package pubsubbench is the plumbing of pubsub's benchmarks: the
// interceptor chains they run through ([Chains]), the subscriber
// configuration ([Delivery]), the pacing of the latency runs ([Paced] at
// [LatencyRate]) and what they measure ([Countdown], [Latencies],
// [CPUMeter]), shared by [pubsubtest.Bench], pubsub's own benchmarks and
// natsjs's bare JetStream loop. It is internal to keep pubsubtest's API to
// the conformance suite and Bench: a driver's author needs none of it.
//
// [pubsubtest.Bench]: https://pkg.go.dev/github.com/connectkit/connectkit/pubsub/pubsubtest#Bench
package pubsubbench

import (
	"time"

	"github.com/connectkit/connectkit/pubsub"
)

// Delivery is the subscriber configuration of the benchmarks.
var Delivery = pubsub.DeliveryConfig{Concurrency: 16, Prefetch: 512}

// LatencyRate is the paced rate of the latency benchmarks, in messages per
// second.
const LatencyRate = 5000

// waitTimeout is how long a benchmark waits for its messages, as
// pubsubtest's tests wait for a condition: generous, since a loaded machine
// is slow, and never reached when the broker is correct.
const waitTimeout = 2 * time.Minute
