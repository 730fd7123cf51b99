// Package conformance implements connectrpc.conformance.v1.ConformanceService,
// the service the official [Connect conformance suite] calls to check that a
// server speaks the Connect, gRPC and gRPC-Web protocols correctly.
//
// The service follows the suite's reference server: each request says which
// headers, trailers, messages, error and delay to answer with, and the
// service echoes back what it received (request headers, timeout, Connect GET
// query, the request messages themselves) in a ConformancePayload or, on
// error, in the error details. The cmd/conformance-server program serves it
// under the protocol of the suite's server mode.
//
// [Connect conformance suite]: https://github.com/connectrpc/conformance
package conformance

import (
	"context"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	conformancev1 "github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1"
	"github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1/conformancev1connect"
)

// NewHandler returns the path and HTTP handler of the conformance service,
// built with opts. Unimplemented answers CodeUnimplemented, as the suite
// expects; every other method behaves like the suite's reference server.
func NewHandler(opts ...connect.HandlerOption) (string, http.Handler) {
	path, h := conformancev1connect.NewConformanceServiceHandler(service{}, opts...)
	return path, withHTTPRequest(h)
}

// service implements ConformanceService. Unimplemented comes from the
// embedded generated type on purpose: the suite checks that it fails.
type service struct {
	conformancev1connect.UnimplementedConformanceServiceHandler
}

func (service) Unary(
	ctx context.Context,
	req *connect.Request[conformancev1.UnaryRequest],
) (*connect.Response[conformancev1.UnaryResponse], error) {
	payload, err := unary(ctx, req.Msg.GetResponseDefinition(), req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&conformancev1.UnaryResponse{Payload: payload}), nil
}

func (service) IdempotentUnary(
	ctx context.Context,
	req *connect.Request[conformancev1.IdempotentUnaryRequest],
) (*connect.Response[conformancev1.IdempotentUnaryResponse], error) {
	payload, err := unary(ctx, req.Msg.GetResponseDefinition(), req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&conformancev1.IdempotentUnaryResponse{Payload: payload}), nil
}

func (service) ClientStream(
	ctx context.Context,
	stream *connect.ClientStream[conformancev1.ClientStreamRequest],
) (*connect.Response[conformancev1.ClientStreamResponse], error) {
	var (
		def  *conformancev1.UnaryResponseDefinition
		reqs []*anypb.Any
	)
	for stream.Receive() {
		msg := stream.Msg()
		if len(reqs) == 0 {
			// Only the first message's definition counts.
			def = msg.GetResponseDefinition()
		}
		reqAny, err := asAny(msg)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, reqAny)
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	payload, err := unaryResult(ctx, def, reqs)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&conformancev1.ClientStreamResponse{Payload: payload}), nil
}

func (service) ServerStream(
	ctx context.Context,
	req *connect.Request[conformancev1.ServerStreamRequest],
	stream *connect.ServerStream[conformancev1.ServerStreamResponse],
) error {
	def := req.Msg.GetResponseDefinition()
	if def == nil {
		return nil
	}
	reqAny, err := asAny(req.Msg)
	if err != nil {
		return err
	}
	addHeaders(stream.ResponseHeader(), def.GetResponseHeaders())
	addHeaders(stream.ResponseTrailer(), def.GetResponseTrailers())
	if len(def.GetResponseData()) > 0 {
		// Send the headers now so the client sees them before any delay.
		if err := stream.Send(nil); err != nil {
			return sendError(err)
		}
	}
	delay := time.Duration(def.GetResponseDelayMs()) * time.Millisecond
	for i, data := range def.GetResponseData() {
		resp := &conformancev1.ServerStreamResponse{Payload: &conformancev1.ConformancePayload{Data: data}}
		if i == 0 {
			// Nothing in the request info changes after the first response.
			resp.Payload.RequestInfo = requestInfo(ctx, req.Header(), []*anypb.Any{reqAny})
		}
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return sendError(err)
		}
	}
	if def.GetError() == nil {
		return nil
	}
	if len(def.GetResponseData()) == 0 {
		// No response carried the request info: the error does.
		return connectError(def.GetError(), requestInfo(ctx, req.Header(), []*anypb.Any{reqAny}))
	}
	return connectError(def.GetError(), nil)
}

// unary answers the unary or idempotent-unary request msg.
func unary(ctx context.Context, def *conformancev1.UnaryResponseDefinition, msg proto.Message) (*conformancev1.ConformancePayload, error) {
	reqAny, err := asAny(msg)
	if err != nil {
		return nil, err
	}
	return unaryResult(ctx, def, []*anypb.Any{reqAny})
}

// unaryResult builds the single response of a unary or client-stream call
// from def: it sets the response headers and trailers on the call, waits for
// the delay, then returns the payload or the error, both carrying the request
// info. A nil def means no metadata and a payload with the request info only.
func unaryResult(ctx context.Context, def *conformancev1.UnaryResponseDefinition, reqs []*anypb.Any) (*conformancev1.ConformancePayload, error) {
	call, ok := connect.CallInfoForHandlerContext(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeInternal, errNoCallInfo)
	}
	info := requestInfo(ctx, call.RequestHeader(), reqs)
	if def == nil {
		return &conformancev1.ConformancePayload{RequestInfo: info}, nil
	}
	// connect-go sends these even when the call fails.
	addHeaders(call.ResponseHeader(), def.GetResponseHeaders())
	addHeaders(call.ResponseTrailer(), def.GetResponseTrailers())
	if err := sleepUnary(ctx, time.Duration(def.GetResponseDelayMs())*time.Millisecond); err != nil {
		return nil, err
	}
	if e := def.GetError(); e != nil {
		return nil, connectError(e, info)
	}
	return &conformancev1.ConformancePayload{RequestInfo: info, Data: def.GetResponseData()}, nil
}
