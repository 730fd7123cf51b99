package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/anypb"

	conformancev1 "github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1"
)

// errNoCallInfo means a unary or client-stream handler ran without the call
// info connect-go puts in its context: a wrapper dropped the context.
var errNoCallInfo = errors.New("conformance: no connect call info in the handler context")

// connectError turns the error a response definition asks for into a
// *connect.Error, with info (when not nil) appended to its details.
func connectError(e *conformancev1.Error, info *conformancev1.ConformancePayload_RequestInfo) *connect.Error {
	err := connect.NewError(connect.Code(e.GetCode()), errors.New(e.GetMessage()))
	details := e.GetDetails()
	if info != nil {
		infoAny, anyErr := anypb.New(info)
		if anyErr != nil {
			return connect.NewError(connect.CodeInternal, fmt.Errorf("failed to pack the request info: %w", anyErr))
		}
		details = append(details[:len(details):len(details)], infoAny)
	}
	for _, d := range details {
		detail, detailErr := connect.NewErrorDetail(d)
		if detailErr != nil {
			return connect.NewError(connect.CodeInternal, fmt.Errorf("failed to add error detail %s: %w", d.GetTypeUrl(), detailErr))
		}
		err.AddDetail(detail)
	}
	return err
}

// contextError gives a context's error its RPC code.
func contextError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}

// sendError wraps a failure to send on a stream, keeping the code connect-go
// gave it if any.
func sendError(err error) error {
	if errors.Is(err, io.EOF) || connect.CodeOf(err) != connect.CodeUnknown {
		return err
	}
	return connect.NewError(connect.CodeInternal, fmt.Errorf("failed to send on stream: %w", err))
}
