package natsjs

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pubAckError reads what nats.go's jetstream reads in a PubAck: its fast
// path takes only plain acknowledgements, and everything else goes to
// encoding/json.
func TestPubAckError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want error // nil: stored
		code jetstream.ErrorCode
	}{
		{name: "stored", data: `{"stream":"orders","seq":42}`},
		{name: "duplicate", data: `{"stream":"orders","seq":42,"duplicate":true}`},
		{name: "with domain", data: `{"stream":"orders","domain":"hub","seq":7}`},
		{name: "stream named error", data: `{"stream":"error","seq":1}`},
		{name: "API error", data: `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"","seq":0}`, code: 10077},
		{name: "error after the stream", data: `{"stream":"orders","error":{"code":400,"err_code":10071,"description":"wrong last sequence: 1"}}`, code: 10071},
		{name: "no stream", data: `{"seq":1}`, want: jetstream.ErrInvalidJSAck},
		{name: "empty stream", data: `{"stream":"","seq":1}`, want: jetstream.ErrInvalidJSAck},
		{name: "cut short", data: `{"stream":"orders","seq":4`, want: jetstream.ErrInvalidJSAck},
		{name: "not JSON", data: `+OK`, want: jetstream.ErrInvalidJSAck},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := pubAckError([]byte(tc.data))
			var apiErr *jetstream.APIError
			switch {
			case tc.code != 0:
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.code {
					t.Errorf("pubAckError(%s) = %v, want the API error %d", tc.data, err, tc.code)
				}
			case !errors.Is(err, tc.want) || (tc.want == nil && err != nil):
				t.Errorf("pubAckError(%s) = %v, want %v", tc.data, err, tc.want)
			}
		})
	}
}

// A publish awaiting its ack times out at the fifth sweep after it was
// sent, the fourth at the earliest being a full PublishTimeout after the
// send; a dropped connection fails every one at once.
func TestAcksTimeoutAndDisconnect(t *testing.T) {
	t.Parallel()
	settled := map[*confirmation]error{}
	a := &acks{pending: map[string]*confirmation{}, settle: func(c *confirmation, err error) { settled[c] = err }}
	old, young := &confirmation{}, &confirmation{}
	a.pending["old"] = old
	a.sweep() // young is sent after the first sweep
	young.sentAt = a.sweeps
	a.pending["young"] = young
	for range sweepsBeforeTimeout - 1 {
		a.sweep()
	}
	if len(settled) != 0 {
		t.Fatalf("within %d sweeps of its send a publish timed out: %v", sweepsBeforeTimeout, settled)
	}
	a.sweep()
	if err, ok := settled[old]; !ok || !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		t.Errorf("the publish sent before the first of %d sweeps: settled %v with %v, want the timeout", sweepsBeforeTimeout+1, ok, err)
	}
	if _, ok := settled[young]; ok {
		t.Errorf("the publish sent %d sweeps ago timed out", sweepsBeforeTimeout)
	}
	a.disconnected()
	if err := settled[young]; !errors.Is(err, nats.ErrDisconnected) {
		t.Errorf("a publish awaiting its ack when the connection dropped: %v, want ErrDisconnected", err)
	}
	if a.waiting() != 0 {
		t.Errorf("%d publishes still await their ack", a.waiting())
	}
}

// Once Close has begun, the publishes still awaiting their ack when the
// connection goes (the drain over, or the connection dropping meanwhile)
// fail as closed (pubsub.ErrClosed, through the broker's settle), as
// those that the sweep fails at the end do, not as disconnected: nothing
// will send them again. New publishes are refused.
func TestAcksClosing(t *testing.T) {
	t.Parallel()
	settled := map[*confirmation]error{}
	a := &acks{pending: map[string]*confirmation{}, settle: func(c *confirmation, err error) { settled[c] = err }}
	inFlight := &confirmation{}
	a.pending["in flight"] = inFlight
	a.close()
	if err := a.publish(&confirmation{}); !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("a publish once Close has begun: %v, want ErrConnectionClosed", err)
	}
	a.disconnected()
	if err := settled[inFlight]; !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("a publish awaiting its ack when Close's connection went: %v, want ErrConnectionClosed", err)
	}
}
