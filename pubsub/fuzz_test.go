package pubsub_test

import (
	"bytes"
	"context"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/pubsubbench"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"google.golang.org/protobuf/proto"
)

// FuzzDelivery hands a subscriber running kit's default chain deliveries
// whose headers and payload are anything a producer that is not pubsub (or a
// broken one) might send. The handler never fails, so whatever arrives must
// get exactly one verdict on its first attempt, never a retry: an ack after
// the handler ran once, or a dead letter with a reason, the original payload
// and headers, without the handler running. And the subscriber keeps
// serving: every input goes to the same one.
func FuzzDelivery(f *testing.F) {
	valid, _ := proto.Marshal(&pingv1.PingRequest{Number: 1, Text: "hi"})
	invalid, _ := proto.Marshal(&pingv1.PingRequest{Number: -1}) // fails validation
	for _, seed := range []struct {
		typ, contentType, encoding, traceparent, key, value string
		data                                                []byte
	}{
		{typ: "connectkit.ping.v1.PingRequest", contentType: pubsub.ContentTypeProto, data: valid},
		{data: valid},
		{data: nil},
		{data: invalid},
		{data: []byte{0xff, 0xff, 0xff}},
		{typ: "example.v1.ProfileChanged", data: valid},
		{contentType: pubsub.ContentTypeJSON, data: []byte(`{"number": "2", "text": "hi"}`)},
		{contentType: pubsub.ContentTypeJSON, data: []byte(`{"number": "x"}`)},
		{contentType: "text/plain", data: []byte("hi")},
		{encoding: "gzip", data: valid},
		{traceparent: "00-garbage-01", data: valid},
		{traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", data: valid},
		{key: "Connect-Timeout-Ms", value: "0", data: valid},
		{key: "Grpc-Timeout", value: "1n", data: valid},
		{key: "Nats-Msg-Id", value: "x", data: valid},
	} {
		f.Add(seed.typ, seed.contentType, seed.encoding, seed.traceparent, seed.key, seed.value, seed.data)
	}

	b := &fuzzBroker{subscribed: make(chan func(pubsub.Delivery), 1)}
	var handled atomic.Int64
	sub, err := pubsub.NewSubscriber(b, "fuzz", "fuzz", func(context.Context, *pingv1.PingRequest) error {
		handled.Add(1)
		return nil
	}, pubsubbench.Chain{}.PubsubOptions(f)...)
	if err != nil {
		f.Fatal(err)
	}
	pubsubtest.Start(f, sub)
	deliver := <-b.subscribed

	var ids atomic.Int64
	var prev atomic.Pointer[fuzzDelivery] // the last input's delivery
	f.Cleanup(func() { checkOneVerdict(f, prev.Load()) })
	f.Fuzz(func(t *testing.T, typ, contentType, encoding, traceparent, key, value string, data []byte) {
		checkOneVerdict(t, prev.Load())
		h := http.Header{}
		for k, v := range map[string]string{
			pubsub.HeaderMessageType: typ, pubsub.HeaderContentType: contentType,
			"Content-Encoding": encoding, "Traceparent": traceparent,
		} {
			if v != "" {
				h.Set(k, v)
			}
		}
		if key != "" {
			h.Add(textproto.CanonicalMIMEHeaderKey(key), value)
		}
		d := &fuzzDelivery{
			msg:      pubsub.Message{ID: strconv.FormatInt(ids.Add(1), 10), Topic: "fuzz", Header: h.Clone(), Data: bytes.Clone(data)},
			verdicts: make(chan string, 4),
		}
		before := handled.Load()
		deliver(d)
		var verdict string
		select {
		case verdict = <-d.verdicts:
		case <-time.After(10 * time.Second):
			t.Fatalf("no verdict in 10s for headers %v, data %q", h, data)
		}
		ran := handled.Load() - before
		dl := b.deadLetter(d.msg.ID)
		switch verdict {
		case "ack":
			if ran != 1 || dl != nil {
				t.Errorf("acked with the handler run %d times and dead letter %v; headers %v, data %q", ran, dl, h, data)
			}
		case "term":
			switch {
			case ran != 0:
				t.Errorf("dead-lettered after the handler ran %d times; headers %v, data %q", ran, h, data)
			case dl == nil:
				t.Errorf("terminated without a dead letter; headers %v, data %q", h, data)
			case dl.Reason == "" || dl.Error == "" || dl.Attempts != 1:
				t.Errorf("dead letter without reason, error or attempt count: %+v", dl)
			case !bytes.Equal(dl.Message.Data, data) || dl.Message.Header.Get(pubsub.HeaderMessageType) != h.Get(pubsub.HeaderMessageType):
				t.Errorf("dead letter does not carry the original message: %+v, want headers %v, data %q", dl.Message, h, data)
			}
		default:
			t.Errorf("verdict %s on a message whose handler cannot fail; headers %v, data %q", verdict, h, data)
		}
		prev.Store(d)
	})
}

// checkOneVerdict fails tb if d, which had its verdict, got another since.
// Inputs run one after another: FuzzDelivery checks each delivery when the
// next input starts, and the last one at the end.
func checkOneVerdict(tb testing.TB, d *fuzzDelivery) {
	if d == nil {
		return
	}
	select {
	case v := <-d.verdicts:
		tb.Errorf("a second verdict, %s, for the message of headers %v, data %q", v, d.msg.Header, d.msg.Data)
	default:
	}
}

// fuzzBroker hands FuzzDelivery the subscriber's deliver function and keeps
// its dead letters. The methods a subscriber does not call while handling
// are left to the nil embedded Broker.
type fuzzBroker struct {
	pubsub.Broker
	subscribed chan func(pubsub.Delivery)

	mu   sync.Mutex
	dead map[string]*pubsub.DeadLetter
}

func (b *fuzzBroker) System() string              { return "fuzz" }
func (b *fuzzBroker) Check(context.Context) error { return nil }

func (b *fuzzBroker) Subscribe(_ context.Context, _ pubsub.ConsumerConfig, deliver func(pubsub.Delivery)) (pubsub.Consumer, error) {
	b.subscribed <- deliver
	return fuzzConsumer{}, nil
}

func (b *fuzzBroker) DeadLetter(_ context.Context, dl *pubsub.DeadLetter) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dead == nil {
		b.dead = map[string]*pubsub.DeadLetter{}
	}
	b.dead[dl.Message.ID] = dl
	return nil
}

func (b *fuzzBroker) deadLetter(id string) *pubsub.DeadLetter {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dead[id]
}

type fuzzConsumer struct{}

func (fuzzConsumer) Drain(context.Context) error { return nil }
func (fuzzConsumer) Close(context.Context) error { return nil }

// fuzzDelivery records its verdicts.
type fuzzDelivery struct {
	msg      pubsub.Message
	verdicts chan string
}

func (d *fuzzDelivery) Message() *pubsub.Message { return &d.msg }
func (d *fuzzDelivery) Attempt() int             { return 1 }
func (d *fuzzDelivery) Ack() error               { d.verdicts <- "ack"; return nil }
func (d *fuzzDelivery) Nak(time.Duration) error  { d.verdicts <- "nak"; return nil }
func (d *fuzzDelivery) Term(reason string) error { d.verdicts <- "term"; return nil }
