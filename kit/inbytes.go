package kit

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/semaphore"
)

// requestBytes bounds the bytes of request messages that the calls whose
// client sends one message (unary calls and server streams) hold at once,
// across the server: [Config.MaxInFlightBytes]. connect reads such a
// call's whole message, and decodes it, before any interceptor runs, so
// neither [Config.MaxInFlight] nor [Config.MaxRequestBytes] (one message)
// bounds their sum.
//
// A call reserves its message's size before connect reads it, and gives
// it back once its handler has returned: the size its Content-Length
// says; for an enveloped message (gRPC, gRPC-Web, a Connect stream), the
// size its 5-byte prefix says, which is read first (under the body's
// timeout, see [guardBody]) and handed on to connect with the rest; for a
// Connect unary body of unknown length, the most it may be
// (MaxRequestBytes); a REST call's, its body's Content-Length as sent,
// when it has one; never more than one message may be (MaxRequestBytes
// and its prefix). A call that cannot get its bytes at once waits, up
// to [requestBytesWait] and within its body's time, then is refused with
// ResourceExhausted and a Retry-After; one larger than the whole limit is
// refused at once. Either way nothing of its message reaches connect.
//
// golang.org/x/sync/semaphore's Weighted does the counting: it is fair
// (first come, first served, so a large call is not starved by small
// ones) and a waiter that gives up takes nothing.
type requestBytes struct {
	sem     *semaphore.Weighted
	limit   int64
	wait    atomic.Int64 // the longest a call waits, a time.Duration: requestBytesWait
	inUse   atomic.Int64 // the bytes reserved now; peak: the most at once
	peak    atomic.Int64
	waiting atomic.Int64 // the calls waiting for their bytes
}

// requestBytesWait bounds how long a call waits for its bytes: long enough
// for another large call's upload and decoding to end, short enough that
// its client, told to retry, can try another instance.
const requestBytesWait = 5 * time.Second

func newRequestBytes(limit int64) *requestBytes {
	if limit <= 0 {
		return nil
	}
	b := &requestBytes{sem: semaphore.NewWeighted(limit), limit: limit}
	b.wait.Store(int64(requestBytesWait))
	return b
}

// reserve reserves the bytes of r's message, for a call whose client
// sends one message and whose body is not empty, waiting up to wait (the
// body's timeout; at most b.wait, [requestBytesWait]); maxBytes is
// MaxRequestBytes. It returns the bytes to
// release once the handler has returned, and r, whose body may have been
// replaced; or, when the call is refused, the refusal, which the caller
// writes.
func (b *requestBytes) reserve(r *http.Request, maxBytes int64, wait time.Duration) (int64, *http.Request, *connect.Error) {
	n := r.ContentLength
	if n < 0 {
		if sent, ok := r.Context().Value(sentLengthKey{}).(int64); ok {
			n = sent // a REST call's body as sent, which vanguard transcodes
		} else if enveloped(r.Header.Get("Content-Type")) {
			// In place, as http.MaxBytesReader's idiom has it: a copy
			// of the request would cost a call an allocation more.
			var prefix *prefixedBody
			n, prefix = readPrefix(r.Body, maxBytes)
			r.Body = prefix
		} else {
			n = min(maxBytes, b.limit)
		}
	}
	// A body that says it is longer than one message may be, prefix
	// included, is refused for its size once that much is read (connect
	// reads an envelope's prefix and skips a message over the limit;
	// restBody stops a REST body at it): it holds no more, and must
	// neither wait for bytes it will not read nor be refused, and told
	// to retry, by this bound.
	n = min(n, maxBytes+int64(len(prefixedBody{}.prefix)))
	if n <= 0 {
		return 0, r, nil
	}
	if n > b.limit {
		return 0, r, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"request of %d bytes exceeds the %d-byte limit on request bytes read at once (KIT_MAX_INFLIGHT_BYTES)", n, b.limit))
	}
	if !b.sem.TryAcquire(n) {
		// The slow path only: the timer and context are allocated
		// when the server is at its limit.
		if most := time.Duration(b.wait.Load()); wait <= 0 || wait > most {
			wait = most
		}
		b.waiting.Add(1)
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		err := b.sem.Acquire(ctx, n)
		cancel()
		b.waiting.Add(-1)
		if err != nil {
			ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
				"server busy: %d bytes of requests are being read (KIT_MAX_INFLIGHT_BYTES); this one's %d did not fit within %s", b.limit, n, wait))
			ce.Meta().Set("Retry-After", "1")
			return 0, r, ce
		}
	}
	if now := b.inUse.Add(n); now > b.peak.Load() {
		b.notePeak(now)
	}
	return n, r, nil
}

func (b *requestBytes) notePeak(now int64) {
	for {
		p := b.peak.Load()
		if now <= p || b.peak.CompareAndSwap(p, now) {
			return
		}
	}
}

// release gives back n bytes that reserve returned.
func (b *requestBytes) release(n int64) {
	if n > 0 {
		b.inUse.Add(-n)
		b.sem.Release(n)
	}
}

// sentLengthKey is the context key of the Content-Length of a REST call's
// body, which the request vanguard makes of it has lost.
type sentLengthKey struct{}

// enveloped says whether a body of content type ct frames its messages
// with connect's 5-byte prefix: gRPC, gRPC-Web, Connect streams.
func enveloped(ct string) bool {
	ct = strings.ToLower(strings.TrimSpace(ct))
	return strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+")
}

// prefixedBody hands on a body whose first bytes were read to learn its
// message's size: those bytes, then the read's error if it failed, then
// the rest.
type prefixedBody struct {
	io.ReadCloser
	prefix [5]byte
	n, off int
	err    error
}

// readPrefix reads the envelope prefix of body and returns the size of
// the message it announces, prefix included (0 when the prefix did not
// arrive, or announces more than maxBytes, which connect refuses without
// holding it), and the body to hand on.
func readPrefix(body io.ReadCloser, maxBytes int64) (int64, *prefixedBody) {
	p := &prefixedBody{ReadCloser: body}
	p.n, p.err = io.ReadFull(body, p.prefix[:])
	if p.err != nil {
		if p.err == io.ErrUnexpectedEOF {
			p.err = io.EOF // as the body said: connect reports the short message
		}
		return 0, p
	}
	size := int64(binary.BigEndian.Uint32(p.prefix[1:]))
	if size > maxBytes {
		return 0, p
	}
	return size + int64(len(p.prefix)), p
}

func (p *prefixedBody) Read(b []byte) (int, error) {
	if p.off < p.n {
		n := copy(b, p.prefix[p.off:p.n])
		p.off += n
		return n, nil
	}
	if p.err != nil {
		return 0, p.err
	}
	return p.ReadCloser.Read(b)
}
