package natsjs

import "strings"

// ackMetadata is what natsjs uses of a JetStream message's metadata, which
// its reply subject carries.
type ackMetadata struct {
	delivered uint64 // how many times the message was delivered, this time included
	stream    string
	streamSeq uint64 // the message's sequence in the stream
	ts        string // the timestamp's token: see timestamp
}

// timestamp returns when the stream stored the message, in Unix
// nanoseconds. It is parsed when asked for: only a message whose producer
// is not pubsub needs it (for its id), and every other delivery would
// parse its 19 digits for nothing.
func (md ackMetadata) timestamp() uint64 { return parseNum(md.ts) }

// ackPrefix begins the reply subject of every JetStream message.
const ackPrefix = "$JS.ACK."

// parseAckMetadata reads the fields of ackMetadata in a reply subject as
// nats.go's Msg.Metadata does (v1.56, internal/parser), and fails where it
// does. Metadata also allocates a MsgMetadata and parses the fields natsjs
// does not use, which cost a delivery ~1 100 instructions more (callgrind,
// BENCHMARKS.md section 3). A reply subject is "$JS.ACK." then either the
// stream, consumer, delivery count, stream and consumer sequences,
// timestamp and pending count (9 tokens in all), or the domain and account
// hash before those and any tokens after them (11 or more).
//
// It looks for the first eight dots after "$JS.ACK." and no more: that is
// enough to tell the two forms apart (7 tokens after the prefix, or 9 or
// more) and to reach the timestamp, and it leaves the rest of the subject
// unread. Counting every dot, then cutting the subject token by token,
// read it all twice: 1 465 instructions for a reply subject of nats-server
// 2.15, against 705 (BenchmarkParseAckMetadata under callgrind,
// BENCHMARKS.md section 3); a byte loop instead of strings.IndexByte took
// 973.
func parseAckMetadata(reply string) (md ackMetadata, ok bool) {
	if !strings.HasPrefix(reply, ackPrefix) {
		return md, false
	}
	rest := reply[len(ackPrefix):]
	var dots [8]int // where the first len(dots) dots of rest are
	n := 0          // how many of them rest has
	for i := 0; n < len(dots); n++ {
		j := strings.IndexByte(rest[i:], '.')
		if j < 0 {
			break
		}
		i += j
		dots[n] = i
		i++
	}
	// n+1 tokens after the prefix, or more than 8 when n is 8.
	skip := 0 // the domain and account hash
	switch n {
	case 6:
	case 8:
		skip = 2
	default:
		return md, false
	}
	// token k of rest, for k < n: between the dot before it and its own.
	token := func(k int) string {
		start := 0
		if k > 0 {
			start = dots[k-1] + 1
		}
		return rest[start:dots[k]]
	}
	md.stream, md.delivered, md.streamSeq = token(skip), parseNum(token(skip+2)), parseNum(token(skip+3))
	md.ts = token(skip + 5)
	return md, true
}

// parseNum is nats.go's parser.ParseNum: the decimal number s, or 0 if s
// holds anything but digits; it does not detect an overflow.
func parseNum(s string) (n uint64) {
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}
