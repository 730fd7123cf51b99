package natsjs

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acks carries Publish's asynchronous publishes: each goes out with a reply
// subject of its own under one subscription, and the server's
// acknowledgement settles its confirmation. It does what nats.go's
// jetstream.PublishMsgAsync did for the broker (the same reply subjects,
// retries after no responders, timeout, and failure of the publishes
// awaiting their acks when the connection drops; and, which it did not,
// when the connection closes), without what cost a
// publish most there (BENCHMARKS.md section 3): decoding every PubAck with
// encoding/json (~6 000 instructions and six allocations; a PubAck is now
// checked by hand, and only one that is not a plain acknowledgement goes to
// encoding/json), a timer per publish for its timeout (a sweep every
// quarter of PublishTimeout instead), and the future's allocation, its copy
// of the message and the channels of its Ok and Err.
type acks struct {
	nc     *nats.Conn
	settle func(c *confirmation, err error) // gives the broker's error for err

	mu      sync.Mutex
	prefix  string             // of the reply subjects: an inbox, then "."; set with sub
	sub     *nats.Subscription // the replies', made by the first publish
	pending map[string]*confirmation
	seq     uint64 // reply subjects made
	sweeps  uint64 // sweeps done: a publish times out at its fifth after its send
	closing bool   // set by Close: publish sends no more
}

// Retries of a publish that no stream answered (a stream lost, a cluster
// electing a leader), as nats.go's jetstream makes them.
const (
	publishRetries      = jetstream.DefaultPubRetryAttempts
	publishRetryWait    = jetstream.DefaultPubRetryWait
	sweepsBeforeTimeout = 4
)

// publish sends c's message with a reply subject of its own, and returns
// nats.go's error if it could not; the caller then frees its room in the
// window. Otherwise the outcome settles c, which frees it. An error after
// which the message certainly did not leave the process is an
// [unsentError]: one before the message reached nats.go, and those of
// nats.go's checks before it writes a message to its buffer (see
// refusedUnwritten).
func (a *acks) publish(c *confirmation) error {
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return unsentError{nats.ErrConnectionClosed}
	}
	if a.sub == nil {
		a.prefix = a.nc.NewInbox() + "."
		sub, err := a.nc.Subscribe(a.prefix+"*", a.reply)
		if err != nil {
			a.mu.Unlock()
			return unsentError{err}
		}
		a.sub, a.pending = sub, make(map[string]*confirmation)
	}
	a.seq++
	var buf [64]byte
	c.msg.Reply = string(strconv.AppendUint(append(buf[:0], a.prefix...), a.seq, 36))
	token := c.msg.Reply[len(a.prefix):]
	c.sentAt = a.sweeps
	a.pending[token] = c
	a.mu.Unlock()
	if err := a.nc.PublishMsg(&c.msg); err != nil {
		a.mu.Lock()
		pending := a.pending[token] == c
		delete(a.pending, token)
		a.mu.Unlock()
		if !pending {
			// Settled meanwhile (the connection dropped): the outcome
			// freed its room in the window and holds the error.
			return nil
		}
		if refusedUnwritten(err) {
			return unsentError{err}
		}
		return err
	}
	return nil
}

// unsentError is an error of [acks.publish] after which the message
// certainly did not leave the process.
type unsentError struct{ err error }

func (e unsentError) Error() string { return e.err.Error() }
func (e unsentError) Unwrap() error { return e.err }

// refusedUnwritten reports whether err is one that nats.go's PublishMsg
// returns before it writes the message to the connection's buffer (nats.go
// 1.56's publish: a bad subject, headers the server does not take, the
// connection closed or draining, a message over the server's max payload,
// the reconnect buffer full). Any other error may come from the flush of
// that buffer to the socket, which may have sent the message (a write cut
// part way): that publish may be stored.
func refusedUnwritten(err error) bool {
	for _, refused := range [...]error{nats.ErrBadSubject, nats.ErrHeadersNotSupported, nats.ErrConnectionClosed,
		nats.ErrConnectionDraining, nats.ErrMaxPayload, nats.ErrReconnectBufExceeded, nats.ErrInvalidConnection} {
		if err == refused {
			return true
		}
	}
	return false
}

// reply handles the server's answer to a publish.
func (a *acks) reply(m *nats.Msg) {
	a.mu.Lock()
	token := m.Subject[min(len(a.prefix), len(m.Subject)):]
	c := a.pending[token]
	if c == nil { // timed out, or failed with the connection
		a.mu.Unlock()
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" { // no responders
		if c.retries < publishRetries {
			c.retries++
			c.sentAt = a.sweeps
			a.mu.Unlock()
			time.AfterFunc(publishRetryWait, func() { a.resend(token, c) })
			return
		}
		delete(a.pending, token)
		a.mu.Unlock()
		a.settle(c, jetstream.ErrNoStreamResponse)
		return
	}
	delete(a.pending, token)
	a.mu.Unlock()
	a.settle(c, pubAckError(m.Data))
}

// resend sends c's message again after no stream answered it.
func (a *acks) resend(token string, c *confirmation) {
	a.mu.Lock()
	pending := a.pending[token] == c
	a.mu.Unlock()
	if !pending {
		return
	}
	if err := a.nc.PublishMsg(&c.msg); err != nil {
		a.mu.Lock()
		pending = a.pending[token] == c
		delete(a.pending, token)
		a.mu.Unlock()
		if pending {
			a.settle(c, err)
		}
	}
}

// sweep fails the publishes sent sweepsBeforeTimeout sweeps ago or earlier
// with jetstream.ErrAsyncPublishTimeout, as nats.go's timeout did. Sweeps
// come every quarter of the timeout: a publish times out after the
// timeout, and within a quarter more.
func (a *acks) sweep() {
	a.fail(jetstream.ErrAsyncPublishTimeout, func(c *confirmation) bool { return a.sweeps-c.sentAt > sweepsBeforeTimeout })
}

// sweepEvery sweeps until done is closed (the connection is), then fails
// with nats.ErrConnectionClosed the publishes still awaiting their ack: no
// ack can come any more, and no disconnected handler fails them when the
// connection was down already, or with nats.NoCallbacksAfterClientClose.
func (a *acks) sweepEvery(d time.Duration, done <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.sweep()
		case <-done:
			a.fail(nats.ErrConnectionClosed, nil)
			return
		}
	}
}

// disconnected fails every publish awaiting its ack with
// nats.ErrDisconnected, as nats.go's jetstream does when the connection
// drops: its ack may have been lost with it. Once Close has begun (the
// drained connection closing, or dropping meanwhile) it fails them with
// nats.ErrConnectionClosed, as closed (pubsub.ErrClosed): nothing will
// send them again.
func (a *acks) disconnected() {
	a.mu.Lock()
	err := nats.ErrDisconnected
	if a.closing {
		err = nats.ErrConnectionClosed
	}
	a.mu.Unlock()
	a.fail(err, nil)
}

// fail settles with err the publishes awaiting their ack that match (all
// with match nil); a sweep counts.
func (a *acks) fail(err error, match func(*confirmation) bool) {
	var failed []*confirmation
	a.mu.Lock()
	if match != nil {
		a.sweeps++
	}
	for token, c := range a.pending {
		if match == nil || match(c) {
			delete(a.pending, token)
			failed = append(failed, c)
		}
	}
	a.mu.Unlock()
	for _, c := range failed {
		a.settle(c, err)
	}
}

// close makes publish refuse every publish from now on, so that the
// publishes awaiting their ack are all that Close waits for: new ones
// would keep the window from emptying.
func (a *acks) close() {
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
}

// isClosing reports whether close was called.
func (a *acks) isClosing() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closing
}

// waiting returns how many publishes await their ack.
func (a *acks) waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// pubAckOK is how the server's acknowledgement of a stored message starts
// (nats-server's JSPubAckResponse without an error: the stream, then the
// sequence and the optional fields).
const pubAckOK = `{"stream":"`

// pubAckError returns nil for a PubAck that says the message was stored,
// the error it holds otherwise, as nats.go's jetstream reads it. Only an
// answer that is not a plain acknowledgement goes to encoding/json.
func pubAckError(data []byte) error {
	if len(data) > len(pubAckOK)+1 && string(data[:len(pubAckOK)]) == pubAckOK && data[len(pubAckOK)] != '"' &&
		data[len(data)-1] == '}' && !bytes.Contains(data, []byte(`"error"`)) {
		return nil
	}
	var pa struct {
		Error  *jetstream.APIError `json:"error"`
		Stream string              `json:"stream"`
	}
	if err := json.Unmarshal(data, &pa); err != nil {
		return jetstream.ErrInvalidJSAck
	}
	if pa.Error != nil {
		return pa.Error
	}
	if pa.Stream == "" {
		return jetstream.ErrInvalidJSAck
	}
	return nil
}
