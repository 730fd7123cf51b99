package natsjs

import "strings"

// ackMetadata is what natsjs uses of a JetStream message's metadata, which
// its reply subject carries.
type ackMetadata struct {
	delivered uint64 // how many times the message was delivered, this time included
	stream    string
	streamSeq uint64 // the message's sequence in the stream
	timestamp uint64 // when the stream stored it, in Unix nanoseconds
}

// parseAckMetadata reads the fields of ackMetadata in a reply subject as
// nats.go's Msg.Metadata does (v1.56, internal/parser), and fails where it
// does. Metadata also allocates a MsgMetadata and parses the fields natsjs
// does not use, which cost a delivery ~1 100 instructions more (callgrind,
// BENCHMARKS.md section 3). A reply subject is "$JS.ACK." then either the
// stream, consumer, delivery count, stream and consumer sequences,
// timestamp and pending count (9 tokens in all), or the domain and account
// hash before those and any tokens after them (11 or more).
func parseAckMetadata(reply string) (md ackMetadata, ok bool) {
	rest, ok := strings.CutPrefix(reply, "$JS.ACK.")
	if !ok {
		return md, false
	}
	n := strings.Count(rest, ".") + 1 // tokens after "$JS.ACK."
	if n < 7 || n == 8 {
		return md, false
	}
	skip := 0 // the domain and account hash
	if n > 7 {
		skip = 2
	}
	var tok [8]string
	for i := range skip + 6 { // up to the timestamp
		tok[i], rest, _ = strings.Cut(rest, ".")
	}
	md.stream, md.delivered, md.streamSeq = tok[skip], parseNum(tok[skip+2]), parseNum(tok[skip+3])
	md.timestamp = parseNum(tok[skip+5])
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
