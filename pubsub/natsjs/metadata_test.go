package natsjs

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// checkAckMetadata fails tb unless parseAckMetadata reads reply as nats.go's
// Msg.Metadata does (the same parser as jetstream.Msg.Metadata's).
func checkAckMetadata(tb testing.TB, reply string) {
	tb.Helper()
	want, err := (&nats.Msg{Reply: reply, Sub: &nats.Subscription{}}).Metadata()
	got, ok := parseAckMetadata(reply)
	if ok != (err == nil) {
		tb.Fatalf("parseAckMetadata(%q): ok %v, Metadata's error %v", reply, ok, err)
	}
	if ok && (got.delivered != want.NumDelivered || got.stream != want.Stream || got.streamSeq != want.Sequence.Stream ||
		int64(got.timestamp()) != want.Timestamp.UnixNano()) {
		tb.Fatalf("parseAckMetadata(%q) = %+v, Metadata = delivered %d, stream %q, stream sequence %d, timestamp %d",
			reply, got, want.NumDelivered, want.Stream, want.Sequence.Stream, want.Timestamp.UnixNano())
	}
}

var ackReplies = []string{
	"$JS.ACK._.ABCDEFGHIJKLMNOPQRSTUVWXYZ012345.pubsub_t.bench.3.123456.123450.1765030000123456789.4096.Rk9PQkFS", // nats-server 2.15
	"$JS.ACK.hub.ABCDEF.orders.audit.1.7.7.1765030000123456789.0.xyz",
	"$JS.ACK.hub.ABCDEF.orders.audit.2.8.9.1765030000123456789.0",          // no last token: 11
	"$JS.ACK.hub.ABCDEF.orders.audit.2.8.9.1765030000123456789.0.x.y.z",    // more after it
	"$JS.ACK.orders.audit.12.34.30.1765030000123456789.5",                  // the old form: 9
	"$JS.ACK.hub.ABCDEF.orders.audit.2.8.9.1765030000123456789",            // 10: neither
	"$JS.ACK.orders.audit.12.34.30.1765030000123456789",                    // 8
	"$JS.ACK.orders.audit.1x.3-4.30.1.5",                                   // not numbers: 0
	"$JS.ACK.orders.audit.18446744073709551617.99999999999999999999.1.1.1", // overflows as nats.go does
	"$JS.ACK...........",
	"$JS.NAK.orders.audit.12.34.30.1765030000123456789.5",
	"_INBOX.abc.def",
	"",
}

func TestParseAckMetadata(t *testing.T) {
	t.Parallel()
	for _, reply := range ackReplies {
		checkAckMetadata(t, reply)
	}
}

func FuzzParseAckMetadata(f *testing.F) {
	for _, reply := range ackReplies {
		f.Add(reply)
	}
	f.Fuzz(func(t *testing.T, reply string) { checkAckMetadata(t, reply) })
}

// BenchmarkParseAckMetadata parses the reply subject of a message that
// nats-server 2.15 delivers, as every delivery does.
func BenchmarkParseAckMetadata(b *testing.B) {
	for b.Loop() {
		md, ok := parseAckMetadata(ackReplies[0])
		if !ok || md.streamSeq != 123456 {
			b.Fatal(md, ok)
		}
	}
}

// TestDeliveryTimestamp: a delivery whose timestamp metadata is missing or
// not a positive number of Unix nanoseconds tells no time (zero, which
// MessageInfo.Time documents), where nats.go's Metadata reads 1970-01-01
// (or wraps one that overflows to another date).
func TestDeliveryTimestamp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, reply string
		want        time.Time
	}{
		{name: "stored", reply: "$JS.ACK.orders.audit.1.2.3.1765030000123456789.0", want: time.Unix(0, 1765030000123456789)},
		{name: "not a number", reply: "$JS.ACK.orders.audit.1.2.3.17650300x0123456789.0"},
		{name: "empty", reply: "$JS.ACK.orders.audit.1.2.3..0"},
		{name: "zero", reply: "$JS.ACK.orders.audit.1.2.3.0.0"},
		{name: "overflows", reply: "$JS.ACK.orders.audit.1.2.3.99999999999999999999.0"},
		{name: "no metadata", reply: "_INBOX.abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDelivery(&replyMsg{reply: tc.reply})
			if got := d.Timestamp(); !got.Equal(tc.want) {
				t.Errorf("Timestamp of reply %q = %v, want %v", tc.reply, got, tc.want)
			}
		})
	}
}
