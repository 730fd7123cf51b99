package kit

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
)

// plainAnswer is the ResponseWriter of the handler that vanguard calls for
// a REST call: it turns an HTTP error that the handler answers without a
// Connect error (a mux of the user's that serves some of the service's
// procedures and answers the others http.NotFound's "404 page not found",
// a middleware's plain-text 403) into the Connect error of the code whose
// HTTP status it is (see [statusCode]), so that the REST client gets that
// status (a 404 stays a 404), with a google.rpc.Status JSON body that
// names it: vanguard v0.4.0 reads a unary error's body as Connect's JSON
// and answered "invalid character 'p' after top-level value", 500
// Internal, and gives a stream's status Connect's mapping (404
// Unimplemented, HTTP 501).
//
// A unary error is Connect's when its Content-Type is application/json,
// as connect writes it; a stream's errors travel in its end message, under
// 200, so any status of 400 or more is not Connect's.
type plainAnswer struct {
	http.ResponseWriter
	procedure string
	stream    bool
	wrote     bool // a status went to the client
	replaced  bool // the handler's answer was replaced: its body is dropped
}

func (w *plainAnswer) WriteHeader(code int) {
	if w.wrote {
		w.ResponseWriter.WriteHeader(code) // net/http's to log as superfluous
		return
	}
	w.wrote = true
	h := w.Header()
	if code < http.StatusBadRequest || !w.stream && len(h["Content-Type"]) == 1 && h["Content-Type"][0] == "application/json" {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	sent := h.Get("Content-Type")
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "X-Content-Type-Options"} {
		delete(h, k)
	}
	wire := struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{statusCode(code).String(), fmt.Sprintf("the handler of %s answered HTTP %d %s without a Connect error (Content-Type %s)",
		w.procedure, code, http.StatusText(code), quoteBounded(sent))}
	body, _ := json.Marshal(wire) // cannot fail: two strings
	if !w.stream {
		h["Content-Type"] = []string{"application/json"}
		w.ResponseWriter.WriteHeader(code)
		_, _ = w.ResponseWriter.Write(body)
		return
	}
	// The end message of the Connect streaming protocol, flag 2, which
	// carries the error.
	end, _ := json.Marshal(struct {
		Error json.RawMessage `json:"error"`
	}{body})
	h["Content-Type"] = []string{"application/connect+proto"}
	w.ResponseWriter.WriteHeader(http.StatusOK)
	var prefix [5]byte
	prefix[0] = 2
	binary.BigEndian.PutUint32(prefix[1:], uint32(len(end)))
	_, _ = w.ResponseWriter.Write(append(prefix[:], end...))
}

func (w *plainAnswer) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher, which connect's streams use.
func (w *plainAnswer) Flush() {
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
