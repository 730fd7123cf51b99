package kit

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/internal/header"
)

// restStatus reads a REST error's code and message from body, the
// google.rpc.Status JSON that vanguard writes ({"code":8,"message":…}),
// and whether it has a code of an error.
func restStatus(body []byte) (code connect.Code, msg string, ok bool) {
	var status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &status) != nil || status.Code <= 0 || status.Code >= len(grpcCodeNames) {
		return 0, "", false
	}
	return connect.Code(status.Code), status.Message, true
}

// protocolOf names the protocol of a response whose content type is ct, as
// connect and the rpc lines name them: "grpc", "grpcweb", or "connect" (a
// Connect error's JSON, or none).
func protocolOf(ct string) string {
	ct = strings.ToLower(ct)
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return connect.ProtocolGRPCWeb
	case strings.HasPrefix(ct, "application/grpc"):
		return connect.ProtocolGRPC
	}
	return connect.ProtocolConnect
}

// codeName names code as connect and the rpc lines do ("invalid_argument").
func codeName(code connect.Code) string {
	if code == 0 {
		return "ok"
	}
	return code.String()
}

// grpcStatus reads a gRPC or gRPC-Web response's status back from its
// header (a trailers-only response) or its trailers: its code and its
// message, and whether it has one.
func grpcStatus(h http.Header) (code connect.Code, msg string, ok bool) {
	status := header.Get(h, "Grpc-Status")
	msg = header.Get(h, "Grpc-Message")
	if status == "" {
		status = header.Get(h, http.TrailerPrefix+"Grpc-Status")
		msg = header.Get(h, http.TrailerPrefix+"Grpc-Message")
	}
	n, err := strconv.Atoi(status)
	if err != nil || n < 0 || n >= len(grpcCodeNames) {
		return 0, "", false
	}
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	return connect.Code(n), msg, true
}

// connectStatus reads a Connect error's code and message from the
// response whose header is h, status its status and body the start of its
// body. connect writes a unary call's error as JSON, its code first, then
// its message and details ({"code":"invalid_argument","message":…}), with
// a status of 400 or above; and a stream's in the message that ends the
// stream (flags 0x02), after its 5-byte envelope prefix
// ({"error":{"code":…,"message":…},"metadata":…}), with a status of 200;
// gzipped (flags 0x03) when it is 1 KiB or more (kit's compressMinBytes)
// and the client accepts gzip, as a refusal whose message quotes a long
// header the client sent is. A message cut short by [respstatus.Kept] is
// left out; the code is what counts.
func connectStatus(h http.Header, status int, body []byte) (code connect.Code, msg string, ok bool) {
	ct := header.Get(h, "Content-Type")
	switch {
	case status >= 400 && strings.HasPrefix(ct, "application/json"):
		return connectError(json.NewDecoder(bytes.NewReader(body)))
	case status == http.StatusOK && strings.HasPrefix(ct, "application/connect+") && len(body) > 5 && (body[0] == 0x02 || body[0] == 0x03):
		var end io.Reader = bytes.NewReader(body[5:])
		if body[0] == 0x03 {
			if header.Get(h, "Connect-Content-Encoding") != gzipName {
				return 0, "", false
			}
			gz, err := gzip.NewReader(end)
			if err != nil {
				return 0, "", false
			}
			// What the kept bytes inflate to, bounded: connect's
			// message, not a client's.
			end = io.LimitReader(gz, maxInflatedEnd)
		}
		dec := json.NewDecoder(end)
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return 0, "", false
		}
		if key, err := dec.Token(); err != nil || key != "error" {
			return 0, "", false
		}
		return connectError(dec)
	}
	return 0, "", false
}

// maxInflatedEnd bounds what connectStatus inflates of a gzipped end of
// stream: the first [respstatus.Kept] bytes of one hold far less.
const maxInflatedEnd = 64 << 10

// connectError reads a Connect error's JSON object from dec: its code and
// its message, which come first.
func connectError(dec *json.Decoder) (code connect.Code, msg string, ok bool) {
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, "", false
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil || key != "code" && key != "message" {
			break // the details, or the end of what was kept
		}
		value, err := dec.Token()
		s, isString := value.(string)
		if err != nil || !isString {
			break
		}
		if key == "message" {
			msg = s
		} else if code.UnmarshalText([]byte(s)) != nil {
			return 0, "", false
		}
	}
	if code == 0 {
		return 0, "", false
	}
	return code, msg, true
}

// notedStatusKey is the response header key under which kit notes the
// status of a Connect call it answered itself before the chain (see
// [noteStatus]).
const notedStatusKey = "Kit-Rejected-Status"

// noteStatus notes, in h, the header of a response already written, the
// code and message of the Connect error that kit answered a call with
// before the chain, for [rejectedCalls.observe] to read back: a Connect
// response has its status in its HTTP status and body, which the routes
// see only through a wrapper of every call's ResponseWriter. net/http sends
// no change to the header made after WriteHeader but to trailers, which
// this key is not, so the client never sees it.
func noteStatus(h http.Header, code connect.Code, msg string) {
	h[notedStatusKey] = []string{strconv.Itoa(int(code)), msg}
}

// notedStatus reads back what [noteStatus] noted in h, if anything.
func notedStatus(h http.Header) (code connect.Code, msg string, ok bool) {
	v := h[notedStatusKey]
	if len(v) != 2 {
		return 0, "", false
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n <= 0 || n >= len(grpcCodeNames) {
		return 0, "", false
	}
	return connect.Code(n), v[1], true
}

// grpcCodeNames are the gRPC codes' names, as grpc_server_handled_total's
// grpc_code has them.
var grpcCodeNames = [...]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated",
}
