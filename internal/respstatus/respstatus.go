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
	"net/http"
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
// the stream. Its zero value wraps nothing: call [Writer.Reset] first. It
// is reused: a handler may not use it once it returned, as net/http has
// it.
type Writer struct {
	w      http.ResponseWriter
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
func (w *Writer) Reset(rw http.ResponseWriter, stream bool) {
	w.w, w.status, w.stream, w.seen, w.keep, w.n = rw, 0, stream, false, false, 0
}

// Release drops the wrapped writer, so that a Writer kept for reuse holds
// no response; what was recorded stays.
func (w *Writer) Release() { w.w = nil }

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
