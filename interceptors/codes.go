package interceptors

import (
	"context"
	"errors"
	"log/slog"
	"os"
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

// withErrorMeta sets key to value in the metadata of err, wrapping err in a
// *connect.Error (with the code connect would give it) when it is not one.
// Connect sends error metadata as response headers or trailers, except a
// wire error's (one a handler returns as a client gave it, which holds the
// other server's response headers): such an error is made anew, with its
// code, message and details, and the one header.
func withErrorMeta(err error, key, value string) error {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce == nil {
		ce = connect.NewError(codeOf(err), err)
		err = ce
	} else if connect.IsWireError(ce) {
		fresh := connect.NewError(ce.Code(), wireMessage{msg: ce.Message(), err: err})
		for _, d := range ce.Details() {
			fresh.AddDetail(d)
		}
		ce, err = fresh, fresh
	}
	ce.Meta().Set(key, value)
	return err
}

// wireMessage is a wire error made anew by withErrorMeta: its text is the
// wire error's message, and it unwraps to what the handler returned.
type wireMessage struct {
	msg string
	err error
}

func (w wireMessage) Error() string { return w.msg }
func (w wireMessage) Unwrap() error { return w.err }
