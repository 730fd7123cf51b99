package pubsub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"connectrpc.com/connect"
)

// bodyReader is the body of an in-process delivery request: the message's
// bytes, read without copying them first.
type bodyReader struct {
	data []byte
	off  int
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

func (b *bodyReader) WriteTo(w io.Writer) (int64, error) {
	if b.off >= len(b.data) {
		return 0, nil
	}
	n, err := w.Write(b.data[b.off:])
	b.off += n
	return int64(n), err
}

func (b *bodyReader) Close() error { return nil }

// responseRecorder is the http.ResponseWriter of an in-process delivery. It
// keeps the status, and the body of error responses only (a success's body
// is an empty message).
type responseRecorder struct {
	header http.Header
	status int
	body   []byte
}

func (w *responseRecorder) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header, 2)
	}
	return w.header
}

func (w *responseRecorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *responseRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status != http.StatusOK {
		w.body = append(w.body, p...)
	}
	return len(p), nil
}

// Flush implements http.Flusher (connect asks for it on streams only).
func (w *responseRecorder) Flush() {}

// err returns the error of a response that the handler wrote before its
// interceptor chain ran: connect rejected the request itself (a payload that
// does not decode, a size limit, an unknown compression).
func (w *responseRecorder) err() error {
	if w.status == http.StatusOK || w.status == 0 {
		return nil
	}
	var wire struct {
		Code    connect.Code `json:"code"`
		Message string       `json:"message"`
	}
	if err := json.Unmarshal(w.body, &wire); err != nil || wire.Code == 0 {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("HTTP status %d from the handler", w.status))
	}
	return connect.NewError(wire.Code, errors.New(wire.Message))
}
