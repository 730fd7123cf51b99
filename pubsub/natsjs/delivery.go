package natsjs

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats.go/jetstream"
)

// delivery is a JetStream message delivered to a consumer.
type delivery struct {
	m       jetstream.Msg
	msg     pubsub.Message
	attempt int
	seq     uint64          // the stream sequence (see Sequence)
	ts      string          // the timestamp's token of the metadata (see Timestamp)
	gen     uint64          // of the consumer that delivered it
	cgen    *atomic.Uint64  // the consumer's gen now
	pos     *replayPosition // a replay's, told of the verdicts; else nil
}

func newDelivery(m jetstream.Msg) *delivery {
	h := canonical(http.Header(m.Headers()))
	d := &delivery{m: m, msg: pubsub.Message{Topic: m.Subject(), Header: h, Data: m.Data()}, attempt: 1}
	if id := h[headerMessageID]; len(id) > 0 { // a re-driven message
		d.msg.ID = id[0]
		delete(h, headerMessageID)
	} else if id := h[headerMsgID]; len(id) > 0 {
		d.msg.ID = id[0]
	}
	delete(h, headerMsgID)
	if topic, ok := strings.CutPrefix(d.msg.Topic, redrivePrefix); ok {
		_, d.msg.Topic, _ = strings.Cut(topic, ".") // after the subscription
	} else {
		// Only a re-drive carries it: a producer that is not pubsub
		// (whose publishes pubsub does not strip) would forge when the
		// stream stored the message (see pubsub.HeaderOriginalTime).
		delete(h, pubsub.HeaderOriginalTime)
	}
	if md, ok := parseAckMetadata(m.Reply()); ok {
		d.attempt = int(md.delivered)
		if d.msg.ID == "" {
			// From a producer that is not pubsub: the stream, the
			// sequence and the time the stream stored it. The sequence
			// alone would repeat: a stream created again gives it to
			// another message, which Idempotent would then skip and
			// pubsub take for a copy of the first (see Sequence).
			d.msg.ID = md.stream + ":" + strconv.FormatUint(md.streamSeq, 10) + ":" + strconv.FormatUint(md.timestamp(), 10)
		}
		d.seq, d.ts = md.streamSeq, md.ts
	}
	return d
}

func (d *delivery) Message() *pubsub.Message { return &d.msg }
func (d *delivery) Attempt() int             { return d.attempt }

// Sequence is the message's stream sequence (see [pubsub.Delivery]). A
// message's id tells it from another that a stream created again puts at
// the same sequence: its producer's, or for a producer that is not pubsub
// one made of the time the stream stored it too.
func (d *delivery) Sequence() uint64 { return d.seq }

// Timestamp is when the stream stored the message (see [pubsub.Delivery]),
// parsed only when a handler asks; zero for a delivery whose reply subject
// has no metadata, or whose timestamp is not a positive number of Unix
// nanoseconds. nats.go's Metadata reads such a timestamp as 0 (or wraps
// one that overflows), which made the time 1970-01-01 (or any date): a
// handler must see that the broker did not tell, not a wrong date.
func (d *delivery) Timestamp() time.Time {
	ns, err := strconv.ParseInt(d.ts, 10, 64)
	if err != nil || ns <= 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
func (d *delivery) Ack() error {
	if d.stale() {
		return errStaleDelivery
	}
	return d.settled(d.m.Ack())
}

func (d *delivery) Term(reason string) error {
	if d.stale() {
		return errStaleDelivery
	}
	return d.settled(d.m.TermWithReason(reason))
}

// settled tells a replay's position that d had its verdict, unless err
// says that it could not be sent, and returns err.
func (d *delivery) settled(err error) error {
	if err == nil && d.pos != nil {
		d.pos.settled(d.seq)
	}
	return err
}

// stale reports whether the consumer was created again since d was
// delivered.
func (d *delivery) stale() bool { return d.cgen.Load() != d.gen }

func (d *delivery) Nak(delay time.Duration) error {
	if d.stale() {
		return errStaleDelivery
	}
	if delay <= 0 {
		return d.m.Nak()
	}
	return d.m.NakWithDelay(delay)
}

// InProgress restarts the server's AckWait for the message (see
// [pubsub.Delivery]).
func (d *delivery) InProgress() error {
	if d.stale() {
		return errStaleDelivery
	}
	return d.m.InProgress()
}

// canonical gives the keys of h the canonical form that http.Header.Get
// expects, for headers of producers that are not pubsub ("traceparent",
// "content-type"). It allocates only for keys not in that form.
func canonical(h http.Header) http.Header {
	for k, v := range h {
		if knownCanonical(k) {
			continue
		}
		if c := textproto.CanonicalMIMEHeaderKey(k); c != k {
			delete(h, k)
			h[c] = append(h[c], v...)
		}
	}
	return h
}

// knownCanonical reports whether k is one of the keys, all canonical, that
// pubsub and connectkit's interceptors write on the messages they publish,
// which most messages carry and nothing else:
// textproto.CanonicalMIMEHeaderKey takes ~425 instructions to find one of
// them canonical, this switch a few dozen.
func knownCanonical(k string) bool {
	switch k {
	case pubsub.HeaderContentType, pubsub.HeaderMessageType, headerMessageID, headerMsgID,
		"X-Request-Id", "Traceparent", "Tracestate", "Baggage":
		return true
	}
	return false
}
