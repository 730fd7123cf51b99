package pubsub

import (
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkRunningMessages: what the running-message check costs a
// delivery (start and done) at Concurrency 16 and 256, one worker alone
// and all GOMAXPROCS workers at once, each in its own slot.
func BenchmarkRunningMessages(b *testing.B) {
	for _, n := range []int{16, 256} {
		b.Run("serial/"+strconv.Itoa(n), func(b *testing.B) {
			r := make(runningMessages, n)
			id := "m"
			for i := range b.N {
				r.start(0, uint64(i+1), &id)
				r.done(0)
			}
		})
		b.Run("parallel/"+strconv.Itoa(n), func(b *testing.B) {
			r := make(runningMessages, n)
			var slots atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				slot := int(slots.Add(1)-1) % n
				id := "m"
				seq := uint64(slot) << 32
				for pb.Next() {
					seq++
					r.start(slot, seq, &id)
					r.done(slot)
				}
			})
		})
	}
}
