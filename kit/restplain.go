package kit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// plainAnswer is the ResponseWriter of the handler that vanguard calls for
// a REST call: it turns an HTTP error that the handler answers without a
// Connect error (a mux of the user's that serves some of the service's
// procedures and answers the others http.NotFound's "404 page not found",
// a middleware's plain-text 403) into the Connect error of the code whose
// HTTP status it is (see [statusCode]), so that the REST client gets that
// status (a 404 stays a 404), with a google.rpc.Status JSON body that
// names it and keeps the start of the handler's text (see [plainText]):
// vanguard v0.4.0 reads a unary error's body as Connect's JSON and
// answered "invalid character 'p' after top-level value", 500 Internal,
// and gives a stream's status Connect's mapping (404 Unimplemented, HTTP
// 501). The replacement's body is written by [plainAnswer.finish], once
// the handler returned (or flushed); an informational status (103 Early
// Hints) passes before the final one.
//
// A unary error is Connect's when its Content-Type is application/json,
// as connect writes it; a stream's errors travel in its end message, under
// 200, so any status of 400 or more is not Connect's.
type plainAnswer struct {
	http.ResponseWriter
	procedure string
	stream    bool
	wrote     bool   // a final status was written by the handler
	replaced  bool   // the handler's error is held, and replaced unless it is Connect's
	maybe     bool   // a unary error in application/json: held whole, sent as it is if Connect's
	code      int    // the status the handler answered, when replaced
	sent      string // its Content-Type, when replaced
	text      []byte // its body, held: the start (see [plainTextBytes]), or whole when maybe
	done      bool   // the answer's body was written
}

// plainTextBytes is the most of a plain error's text that its message
// keeps: enough for a reason ("token expired", "slow down"), not a page.
const plainTextBytes = 512

// heldErrorBytes is the most of a unary error in application/json that
// is held to tell whether it is Connect's: one larger is no error of
// connect's, whose details a response's limit bounds far below it.
const heldErrorBytes = 1 << 20

func (w *plainAnswer) WriteHeader(code int) {
	if w.wrote {
		w.ResponseWriter.WriteHeader(code) // net/http's to log as superfluous
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints): the final status follows.
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wrote = true
	h := w.Header()
	if code < http.StatusBadRequest {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced, w.code, w.sent = true, code, h.Get("Content-Type")
	if !w.stream && len(h["Content-Type"]) == 1 && h["Content-Type"][0] == "application/json" {
		// Connect's Content-Type, and many a handler's of its own
		// ({"error":"denied"}), which vanguard read as Connect's error
		// with no code and answered 200 {"code":0}: told by the body,
		// at finish.
		w.maybe = true
		return
	}
	w.replaceHeader()
}

// replaceHeader writes the header of the answer that replaces the
// handler's error: its status (a stream's 200, the error in its end
// message), as JSON.
func (w *plainAnswer) replaceHeader() {
	h := w.Header()
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "X-Content-Type-Options"} {
		delete(h, k)
	}
	if !w.stream {
		h["Content-Type"] = []string{"application/json"}
		w.ResponseWriter.WriteHeader(w.code)
		return
	}
	h["Content-Type"] = []string{"application/connect+proto"}
	w.ResponseWriter.WriteHeader(http.StatusOK)
}

func (w *plainAnswer) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		limit := plainTextBytes
		if w.maybe {
			limit = heldErrorBytes
		}
		if !w.done && len(w.text) < limit {
			w.text = append(w.text, p[:min(len(p), limit-len(w.text))]...)
		}
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// finish writes the answer to the handler's error, once the handler
// returned or flushed: a Connect error as the handler wrote it; any other
// replaced by a google.rpc.Status JSON that names the status, and the
// start of the handler's text when it sent text (http.Error's text/plain,
// or JSON), so that a reason it gave ("token expired") reaches the
// client; a stream's as the end message of the Connect streaming
// protocol, flag 2, which carries the error.
func (w *plainAnswer) finish() {
	if !w.replaced || w.done {
		return
	}
	w.done = true
	if w.maybe {
		if _, _, ok := connectError(json.NewDecoder(bytes.NewReader(w.text))); ok {
			delete(w.Header(), "Content-Length")
			w.ResponseWriter.WriteHeader(w.code)
			_, _ = w.ResponseWriter.Write(w.text)
			return
		}
		w.replaceHeader()
	}
	msg := fmt.Sprintf("the handler of %s answered HTTP %d %s without a Connect error", w.procedure, w.code, http.StatusText(w.code))
	if text := plainText(w.sent, w.text[:min(len(w.text), plainTextBytes)]); text != "" {
		msg += ": " + text
	} else {
		msg += " (Content-Type " + quoteBounded(w.sent) + ")"
	}
	wire := struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{statusCode(w.code).String(), msg}
	body, _ := json.Marshal(wire) // cannot fail: two strings
	if !w.stream {
		_, _ = w.ResponseWriter.Write(body)
		return
	}
	end, _ := json.Marshal(struct {
		Error json.RawMessage `json:"error"`
	}{body})
	var prefix [5]byte
	prefix[0] = 2
	binary.BigEndian.PutUint32(prefix[1:], uint32(len(end)))
	_, _ = w.ResponseWriter.Write(append(prefix[:], end...))
}

// plainText returns text, the start of a plain error's body of type
// sent, as a message may hold it: trimmed, valid UTF-8, on one line, or
// "" when sent is no text/plain nor JSON (an HTML page says little in a
// message) or text is blank. A cut text ends with "...".
func plainText(sent string, text []byte) string {
	kind, _, _ := strings.Cut(strings.ToLower(sent), ";")
	kind = strings.TrimSpace(kind)
	if kind != "text/plain" && kind != "application/json" && !strings.HasSuffix(kind, "+json") {
		return ""
	}
	cut := len(text) >= plainTextBytes
	s := strings.ToValidUTF8(string(text), "\ufffd")
	if cut {
		s = strings.TrimRight(s, "\ufffd") // a rune the cut split
	}
	s = strings.Join(strings.Fields(s), " ")
	if cut && s != "" {
		s += "..."
	}
	return s
}

// Flush implements http.Flusher, which connect's streams use.
func (w *plainAnswer) Flush() {
	if w.maybe && !w.done {
		return // held whole until the handler returns (vanguard holds it too)
	}
	w.finish()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the ResponseWriter w wraps, for [http.ResponseController].
func (w *plainAnswer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusCode returns the code whose HTTP status, in google.rpc.Status's
// mapping (vanguard's and grpc-gateway's), is status: of the codes that
// share one, the one that says the least beyond it (InvalidArgument for
// 400, Aborted for 409). A status that no code has is the nearest code's:
// a 405 (the handler takes another HTTP method) Unimplemented, 501, as is
// a 501; a 502 Unavailable, 503, as Connect's clients read it; any other
// Unknown, 500.
func statusCode(status int) connect.Code {
	switch status {
	case http.StatusBadRequest:
		return connect.CodeInvalidArgument
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusNotFound:
		return connect.CodeNotFound
	case http.StatusConflict:
		return connect.CodeAborted
	case http.StatusTooManyRequests:
		return connect.CodeResourceExhausted
	case 499: // client closed request, nginx's and grpc-gateway's
		return connect.CodeCanceled
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return connect.CodeUnimplemented
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return connect.CodeUnavailable
	case http.StatusGatewayTimeout:
		return connect.CodeDeadlineExceeded
	}
	return connect.CodeUnknown
}
