package kit

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// restJSON is vanguard's JSON codec, whose errors decoding a request are
// InvalidArgument, as connect's are for a body that does not decode:
// vanguard reports an error that is not a connect one as Unknown, HTTP
// 500, which would blame the server for a client's malformed body.
type restJSON struct{ *vanguard.JSONCodec }

// Unmarshal implements vanguard.Codec.
func (c restJSON) Unmarshal(data []byte, msg proto.Message) error {
	return invalidArgument(c.JSONCodec.Unmarshal(data, msg))
}

// UnmarshalField implements vanguard.RESTCodec, for a body that is one
// field of the request (`body: "field"`).
func (c restJSON) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return invalidArgument(c.JSONCodec.UnmarshalField(data, msg, field))
}

// MarshalAppend implements vanguard.Codec. A google.rpc.Status, the
// error vanguard writes, whose message is not UTF-8 gets U+FFFD for the
// bytes that are not: vanguard quotes a query parameter or path variable
// that does not parse as it came ("unknown enum: \xff", "invalid
// parameter \"number\" value for type \"int64\": \"\xff\""), and
// answered {"code":13,"message":"failed to marshal end error"} when
// protojson refused it, with the 400 it had set.
func (c restJSON) MarshalAppend(b []byte, msg proto.Message) ([]byte, error) {
	if st, ok := msg.(*status.Status); ok && !utf8.ValidString(st.GetMessage()) {
		msg = &status.Status{Code: st.GetCode(), Message: strings.ToValidUTF8(st.GetMessage(), "\uFFFD"), Details: st.GetDetails()}
	}
	return c.JSONCodec.MarshalAppend(b, msg)
}

// invalidArgument returns err as InvalidArgument, its message made valid
// UTF-8: protojson quotes a body's bytes in its errors ("unexpected token
// \xa70"), and vanguard, which cannot write a google.rpc.Status whose
// message is not UTF-8, answered such a body {"code":13,"message":"failed
// to marshal end error"}, with the 400 it had set.
func invalidArgument(err error) error {
	if err == nil {
		return nil
	}
	if msg := err.Error(); !utf8.ValidString(msg) {
		err = errors.New(strings.ToValidUTF8(msg, "\uFFFD"))
	}
	return connect.NewError(connect.CodeInvalidArgument, err)
}

// restClientError returns the google.rpc.Status JSON of 400
// InvalidArgument that body, vanguard's JSON of an Internal or Unknown
// error (HTTP 500), stands for, if it is a client's error that vanguard
// reports as a plain error: a query parameter that names a field inside
// one that is not a message ("?text.x=1" where text is a string, a list
// or a map) or that names nothing ("?=1"), a body sent to a route that
// takes none, and a query parameter or path variable of a string field
// that is not UTF-8 ("?text=%A7"), which vanguard sets as it is and then
// fails to encode for the handler. Vanguard (v0.4.0, protocol_rest.go) reports those
// without a code, which it then gives Internal or Unknown; its messages
// are matched here, and the parameter they quote named first. Any other
// body is the server's error, and stays a 500.
func restClientError(body []byte) ([]byte, bool) {
	var status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &status) != nil || status.Code != int(connect.CodeInternal) && status.Code != int(connect.CodeUnknown) {
		return nil, false
	}
	msg := status.Message
	const inPath = "in field path "
	switch {
	case msg == "empty field path":
		msg = `invalid query parameter "": it names no field`
	case strings.HasPrefix(msg, inPath):
		quoted, err := strconv.QuotedPrefix(msg[len(inPath):])
		name, uerr := strconv.Unquote(quoted)
		if err != nil || uerr != nil {
			return nil, false
		}
		msg = fmt.Sprintf("invalid query parameter %q: %s", name, strings.TrimPrefix(msg[len(inPath)+len(quoted):], ": "))
	case strings.HasPrefix(msg, noBodyRefusal):
		msg = "this route takes no request body; " + strings.TrimPrefix(msg, noBodyRefusal+" ")
	case msg == "string field contains invalid UTF-8": // generated code's
		msg = "a query parameter or path variable of a string field is not UTF-8"
	case dynamicUTF8Error(msg) != "":
		msg = "a query parameter or path variable of string field " + dynamicUTF8Error(msg) + " is not UTF-8"
	default:
		return nil, false
	}
	return statusJSON(connect.CodeInvalidArgument, msg), true
}

// statusJSON returns the google.rpc.Status JSON of an error of code whose
// message is msg, as vanguard writes one.
func statusJSON(code connect.Code, msg string) []byte {
	out, _ := json.Marshal(struct { // cannot fail: an int, a string, an empty list
		Code    int        `json:"code"`
		Message string     `json:"message"`
		Details []struct{} `json:"details"`
	}{int(code), msg, []struct{}{}})
	return out
}

// plainError says whether h, the header of an error response, is that of
// vanguard's plain-text errors, written by http.Error.
func plainError(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) == 1 && ct[0] == "text/plain; charset=utf-8" && h["X-Content-Type-Options"] != nil
}

// restUnsupported returns the google.rpc.Status JSON, InvalidArgument, of
// text, vanguard's plain-text 415 to a REST request whose body's type
// (or Content-Encoding) it does not take, so that it answers as every other
// REST error does; the HTTP status stays 415. Vanguard (v0.4.0,
// protocol_rest.go) says of a type other than JSON `"T?" sub-format not
// supported`: the message names that type and the one a route takes
// instead. Any other text (`"br" compression not supported`)
// is the message as it is.
func restUnsupported(text []byte) []byte {
	msg := strings.TrimSpace(string(text))
	if quoted, err := strconv.QuotedPrefix(msg); err == nil && msg[len(quoted):] == " sub-format not supported" {
		// The type as vanguard quotes it: it has deleted the
		// Content-Type of the header it shares with r by now.
		if ct, err := strconv.Unquote(quoted); err == nil && strings.HasSuffix(ct, "?") {
			msg = "unsupported content type " + quoteBounded(strings.TrimSuffix(ct, "?")) +
				": a REST route takes a JSON body (Content-Type: application/json)"
		}
	}
	return statusJSON(connect.CodeInvalidArgument, msg)
}

// restMethodNotAllowed returns the google.rpc.Status JSON, Unimplemented,
// that answers a REST request whose method no route of its path takes, in
// place of vanguard's plain-text 405 (the HTTP status stays 405, with its
// Allow, allow): Unimplemented is what grpc-gateway's
// DefaultRoutingErrorHandler answers a 405 with, the call of an operation
// the server does not serve, and not InvalidArgument, since nothing in the
// request but its method is wrong. The message names the method sent, a
// client's choice, and those taken.
func restMethodNotAllowed(method string, allow []string) []byte {
	return statusJSON(connect.CodeUnimplemented,
		"method "+quoteBounded(method)+" not allowed: the path takes "+strings.Join(allow, ","))
}

// noBodyRefusal begins vanguard's message refusing the body of a REST
// call to a route that takes none.
const noBodyRefusal = "request should have no body;"

// dynamicUTF8Error returns the field that msg, protobuf-go's error for a
// string field that is not UTF-8 in a message it encodes by reflection
// (dynamicpb's, "proto: field F contains invalid UTF-8", the space after
// "proto:" a no-break one in some builds), names, or "".
func dynamicUTF8Error(msg string) string {
	const suffix = " contains invalid UTF-8"
	rest, ok := strings.CutPrefix(msg, "proto:")
	if !ok || !strings.HasSuffix(rest, suffix) {
		return ""
	}
	rest = strings.TrimLeft(rest, " \u00a0")
	field, ok := strings.CutPrefix(strings.TrimSuffix(rest, suffix), "field ")
	if !ok {
		return ""
	}
	return field
}

// restGzip is vanguard's gzip decompressor for a REST body sent with
// Content-Encoding: gzip, whose errors are InvalidArgument naming the bad
// gzip, as [restJSON]'s are for a body that does not decode: vanguard
// reports gzip's own error ("gzip: invalid header") as Unknown, HTTP 500.
// WithNoTargetCompression keeps vanguard from sending the handler a
// compressed body, not the handler from compressing its answer: vanguard
// passes on the client's Accept-Encoding, and inflates here too a unary
// answer the handler gzipped (1 KiB or more), to transcode it; a stream's
// answer and a google.api.HttpBody are not compressed (see
// [identityAnswer]).
type restGzip struct{ r gzip.Reader }

// Reset implements connect.Decompressor.
func (d *restGzip) Reset(src io.Reader) error { return badGzip(d.r.Reset(src)) }

// Read implements connect.Decompressor.
func (d *restGzip) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == io.EOF {
		return n, err
	}
	return n, badGzip(err)
}

// Close implements connect.Decompressor.
func (d *restGzip) Close() error { return badGzip(d.r.Close()) }

func badGzip(err error) error {
	if err == nil {
		return nil
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("request body with Content-Encoding gzip does not inflate: %w", err))
}
