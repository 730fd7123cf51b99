package pubsub

import (
	"crypto/rand"
	"strconv"
	"sync/atomic"
)

// idGenerator makes message ids: a random prefix of 80 bits, drawn once per
// publisher, and a counter. Ids need to be unique, not unpredictable, and
// this costs one small allocation per message where drawing 128 random bits
// per message costs a system call.
type idGenerator struct {
	prefix string
	n      atomic.Uint64
}

func newIDGenerator() *idGenerator {
	return &idGenerator{prefix: rand.Text()[:16]}
}

func (g *idGenerator) next() string {
	var buf [32]byte
	b := append(buf[:0], g.prefix...)
	b = strconv.AppendUint(b, g.n.Add(1), 36)
	return string(b)
}
