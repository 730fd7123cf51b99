package pubsub

import (
	"crypto/rand"
	"strconv"
	"strings"
	"sync/atomic"
)

// idGenerator makes message ids: a random prefix of 80 bits, drawn once per
// publisher, and a counter. Ids need to be unique, not unpredictable, and
// this costs one small allocation per message where drawing 128 random bits
// per message costs a system call.
//
// Every character is lower case (the prefix is base32 in a-z and 2-7, the
// counter base 36): nats-server searches each stored message's header block
// 18 times for headers of its own, all of them "Nats-…", and each search
// stops at every "N" it finds; an upper-case prefix held one in 2 of 5
// publishers, which cost their every message ~1 100 instructions per "N"
// (callgrind, BENCHMARKS.md section 3).
type idGenerator struct {
	prefix string
	n      atomic.Uint64
}

func newIDGenerator() *idGenerator {
	return &idGenerator{prefix: strings.ToLower(rand.Text()[:16])}
}

func (g *idGenerator) next() string {
	var buf [32]byte
	b := append(buf[:0], g.prefix...)
	b = strconv.AppendUint(b, g.n.Add(1), 36)
	return string(b)
}
