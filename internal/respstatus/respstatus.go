// Package respstatus records what a handler answered: the status it wrote
// and the start of the body of an error response, which net/http's
// [http.ResponseWriter] keeps to itself.
//
// kit reads them back when a Connect call was answered before its
// interceptor chain ran: connect writes a unary call's code in the status
// and the JSON body of its error, and a stream's in the body's last
// message, not in any header.
package respstatus

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"
)

// Kept is how many bytes of an error response's body a [Writer] keeps:
// enough for a Connect error's code and the message connect writes for a
// request it refuses.
const Kept = 512

// Writer passes everything to the [http.ResponseWriter] it wraps, and
// records the first final status written (200 for a body without one) and
// the first [Kept] bytes of the body when that status is 400 or above, or,
// for a Connect stream, when the body starts with the message that ends
// the stream. Its zero value wraps nothing: call [Writer.Reset] first, and
// give the handler the ResponseWriter it returns. It is reused, call after
// call: each call's handler writes through a ResponseWriter of its own,
// which [Writer.Release] ends, so that a write the handler's goroutines
// make after it returned (which net/http forbids) fails there and never
// reaches the call that uses the Writer next.
type Writer struct {
	w      http.ResponseWriter
	call   *call // the ResponseWriter of the call under way, nil once released
	status int
	stream bool // a Connect stream's response: see Reset
	seen   bool // the body's first byte was written
	keep   bool // the body is kept
	n      int
	body   [Kept]byte
}

// endStreamFlag is the flag of the message that ends a Connect stream,
// in the first byte of its envelope.
const endStreamFlag = 0x02

// Reset makes w wrap rw, with nothing recorded. With stream, rw is a
// Connect stream's: a body whose first message ends the stream (its
// envelope's first byte has the flag 0x02, as the only message of a
// stream that connect refused has) is kept too, whatever its status.
// It returns the ResponseWriter that the call's handler is to write
// through, which passes everything to w until [Writer.Release] (one small
// allocation a call), and has the optional interfaces of rw that a
// handler may type-assert (see newCall).
func (w *Writer) Reset(rw http.ResponseWriter, stream bool) http.ResponseWriter {
	return w.ResetIn(rw, stream, nil)
}

// Spare is room for the ResponseWriter that [Writer.ResetIn] returns for
// net/http's HTTP/1.x ResponseWriter, for a caller that allocates it with
// something else of the call's: one allocation fewer a call (kit's record
// of the request id it echoes, connctx.State.EchoRequestID). Its zero
// value is ready; each must serve one call only.
type Spare struct{ hr callHR }

// ResetIn is [Writer.Reset], with the returned ResponseWriter in spare
// when rw has the optional interfaces of net/http's HTTP/1.x
// ResponseWriter (see newCall); otherwise, or with spare nil, in an
// allocation of its own. spare must not have served a call before.
func (w *Writer) ResetIn(rw http.ResponseWriter, stream bool, spare *Spare) http.ResponseWriter {
	w.w, w.status, w.stream, w.seen, w.keep, w.n = rw, 0, stream, false, false, 0
	var out http.ResponseWriter
	w.call, out = newCall(w, rw, spare)
	return out
}

// Release drops the wrapped writer, so that a Writer kept for reuse holds
// no response, and ends the ResponseWriter that Reset returned: from then
// on its writes fail with [ErrHandlerReturned] and reach no response.
// What was recorded stays.
func (w *Writer) Release() {
	if w.call != nil {
		w.call.w.Store(nil)
		w.call = nil
	}
	w.w = nil
}

// Status is the final status written, or 0 for none yet.
func (w *Writer) Status() int { return w.status }

// Body is the start of the body written, if it was kept (see [Writer]).
// It is w's own, valid until the next Reset.
func (w *Writer) Body() []byte { return w.body[:w.n] }

// Header implements [http.ResponseWriter].
func (w *Writer) Header() http.Header { return w.w.Header() }

// WriteHeader implements [http.ResponseWriter]. An informational status
// (1xx) is not recorded: a final one follows it.
func (w *Writer) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
	w.w.WriteHeader(status)
}

// Write implements [http.ResponseWriter].
func (w *Writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !w.seen && len(p) > 0 {
		w.seen = true
		w.keep = w.status >= 400 || w.stream && p[0]&endStreamFlag != 0
	}
	if w.keep && w.n < len(w.body) {
		w.n += copy(w.body[w.n:], p)
	}
	return w.w.Write(p)
}

// Flush implements [http.Flusher], if the wrapped writer does: connect
// requires a Flusher of every handler's writer.
func (w *Writer) Flush() {
	if f, ok := w.w.(http.Flusher); ok {
		f.Flush()
	}
}

// SetReadDeadline passes the deadline to the wrapped writer, through an
// [http.ResponseController]: kit sets an HTTP/1.x call's body deadline
// on its writer when the writer offers it.
func (w *Writer) SetReadDeadline(t time.Time) error {
	return http.NewResponseController(w.w).SetReadDeadline(t)
}

// SetWriteDeadline passes the deadline to the wrapped writer, as
// [Writer.SetReadDeadline] does.
func (w *Writer) SetWriteDeadline(t time.Time) error {
	return http.NewResponseController(w.w).SetWriteDeadline(t)
}

// Unwrap returns the wrapped writer, for [http.ResponseController].
func (w *Writer) Unwrap() http.ResponseWriter { return w.w }

// ErrHandlerReturned is the error of a write through a call's
// ResponseWriter (see [Writer.Reset]) once the call's handler returned.
var ErrHandlerReturned = errors.New("respstatus: the ResponseWriter was used after its handler returned")

// call is the ResponseWriter of one call served through a [Writer]: it
// passes everything to the Writer until [Writer.Release], and nothing
// after, when the Writer may record another call.
type call struct {
	w atomic.Pointer[Writer]
}

// Header implements [http.ResponseWriter]. Once released, it returns a
// header of its own that nothing reads.
func (c *call) Header() http.Header {
	if w := c.w.Load(); w != nil {
		return w.Header()
	}
	return http.Header{}
}

// WriteHeader implements [http.ResponseWriter]; once released, it does
// nothing.
func (c *call) WriteHeader(status int) {
	if w := c.w.Load(); w != nil {
		w.WriteHeader(status)
	}
}

// Write implements [http.ResponseWriter]; once released, it fails with
// [ErrHandlerReturned].
func (c *call) Write(p []byte) (int, error) {
	if w := c.w.Load(); w != nil {
		return w.Write(p)
	}
	return 0, ErrHandlerReturned
}

// Flush implements [http.Flusher]; once released, it does nothing.
func (c *call) Flush() {
	if w := c.w.Load(); w != nil {
		w.Flush()
	}
}

// FlushError flushes the wrapped writer through an
// [http.ResponseController] and returns its error (net/http's writers
// report a connection or stream that is gone), which
// ResponseController.Flush returns: [http.Flusher]'s Flush alone would
// make it return nil. Once released, it fails with [ErrHandlerReturned].
func (c *call) FlushError() error {
	if w := c.w.Load(); w != nil {
		if w.status == 0 {
			w.status = http.StatusOK // as Flush writes the header
		}
		return http.NewResponseController(w.w).Flush()
	}
	return ErrHandlerReturned
}

// SetReadDeadline is [Writer.SetReadDeadline]; once released, it fails
// with [ErrHandlerReturned].
func (c *call) SetReadDeadline(t time.Time) error {
	if w := c.w.Load(); w != nil {
		return w.SetReadDeadline(t)
	}
	return ErrHandlerReturned
}

// SetWriteDeadline is [Writer.SetWriteDeadline]; once released, it fails
// with [ErrHandlerReturned].
func (c *call) SetWriteDeadline(t time.Time) error {
	if w := c.w.Load(); w != nil {
		return w.SetWriteDeadline(t)
	}
	return ErrHandlerReturned
}

// Unwrap returns the wrapped writer, for [http.ResponseController]; once
// released, nil, which a ResponseController does not support.
func (c *call) Unwrap() http.ResponseWriter {
	if w := c.w.Load(); w != nil {
		return w.w
	}
	return nil
}
