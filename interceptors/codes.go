package interceptors

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"

	"connectrpc.com/connect"
)

// codeOK stands for success where a connect.Code is expected: connect has no
// code for it, and 0 is never a valid error code.
const codeOK connect.Code = 0

// maxCode is the highest standard code (Unauthenticated).
const maxCode = connect.CodeUnauthenticated

// grpcCodeNames are the gRPC names of the codes, indexed by code, as
// google.golang.org/grpc/codes prints them and as go-grpc-prometheus puts
// them in its grpc_code label.
var grpcCodeNames = [maxCode + 1]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
	"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
	"FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
	"Internal", "Unavailable", "DataLoss", "Unauthenticated",
}

// streamTypeNames are the grpc_type label values, indexed by
// connect.StreamType.
var streamTypeNames = [4]string{
	connect.StreamTypeUnary:  "unary",
	connect.StreamTypeClient: "client_stream",
	connect.StreamTypeServer: "server_stream",
	connect.StreamTypeBidi:   "bidi_stream",
}

// codeOf returns the code that connect puts on the wire for err: codeOK for
// nil, the code of a *connect.Error, Canceled or DeadlineExceeded for context
// errors, Unknown otherwise. Codes outside the standard range count as
// Unknown, which keeps label values bounded.
func codeOf(err error) connect.Code {
	if err == nil {
		return codeOK
	}
	var ce *connect.Error
	switch {
	case errors.As(err, &ce) && ce != nil:
		if connect.IsNotModifiedError(err) {
			return codeOK // an HTTP 304 answer to a Connect GET is a success
		}
		if c := ce.Code(); c >= connect.CodeCanceled && c <= maxCode {
			return c
		}
		return connect.CodeUnknown
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return connect.CodeDeadlineExceeded
	default:
		return connect.CodeUnknown
	}
}

// codeString is the connect name of code ("invalid_argument"), or "ok".
func codeString(code connect.Code) string {
	if code == codeOK {
		return "ok"
	}
	return code.String()
}

// isServerError reports whether code says the server failed, following the
// OpenTelemetry RPC conventions for server span status (the same split as
// otelconnect): Unknown, DeadlineExceeded, Unimplemented, Internal,
// Unavailable and DataLoss. Every other error is the caller's.
func isServerError(code connect.Code) bool {
	switch code {
	case connect.CodeUnknown, connect.CodeDeadlineExceeded, connect.CodeUnimplemented,
		connect.CodeInternal, connect.CodeUnavailable, connect.CodeDataLoss:
		return true
	default:
		return false
	}
}

// levelOf is the log level for an outcome: info for success, warn for the
// caller's errors, error for the server's.
func levelOf(code connect.Code) slog.Level {
	switch {
	case code == codeOK:
		return slog.LevelInfo
	case isServerError(code):
		return slog.LevelError
	default:
		return slog.LevelWarn
	}
}

// splitProcedure splits "/pkg.Service/Method" into its service and method.
func splitProcedure(procedure string) (service, method string) {
	procedure = strings.TrimPrefix(procedure, "/")
	if i := strings.LastIndexByte(procedure, '/'); i >= 0 {
		return procedure[:i], procedure[i+1:]
	}
	return procedure, "unknown"
}

// withErrorMeta returns err with key set to value in its metadata (removed
// when value is ""), which connect sends as response headers or trailers: a *connect.Error (with
// the code connect would give err) wrapping err when err is not one;
// otherwise a copy of the *connect.Error in err, with its code, message,
// details and metadata, that unwraps to err. The handler's error is not
// written to: it may be shared (a package variable returned by every call
// that fails so), and its metadata written by concurrent calls raced, and
// could carry another call's value. A wire error's metadata (one a
// handler returns as a client gave it, which holds the other server's
// response headers), which connect does not send, is not copied.
func withErrorMeta(err error, key, value string) error {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce == nil {
		ce = connect.NewError(codeOf(err), err)
		if value != "" {
			ce.Meta().Set(key, value)
		}
		return ce
	}
	fresh := connect.NewError(ce.Code(), wireMessage{msg: ce.Message(), err: err})
	for _, d := range ce.Details() {
		fresh.AddDetail(d)
	}
	if !connect.IsWireError(ce) {
		// Meta on a copy: on ce, it would set ce's metadata when it has none.
		cp := *ce
		for k, v := range cp.Meta() {
			fresh.Meta()[k] = slices.Clone(v)
		}
	}
	if value != "" {
		fresh.Meta().Set(key, value)
	} else {
		fresh.Meta().Del(key)
	}
	return fresh
}

// wireMessage is the cause of an error made anew by withErrorMeta: its text
// is the original's message, and it unwraps to what the handler returned.
type wireMessage struct {
	msg string
	err error
}

func (w wireMessage) Error() string { return w.msg }
func (w wireMessage) Unwrap() error { return w.err }
