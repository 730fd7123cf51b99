package conformance

import (
	"context"
	"errors"
	"io"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/anypb"

	conformancev1 "github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1"
)

// BidiStream takes its response definition and duplex mode from the first
// request. Full duplex answers one response per request received (with the
// requests received since the previous response) and sends what is left
// once the client is done; half duplex reads every request first, then
// answers.
func (service) BidiStream(
	ctx context.Context,
	stream *connect.BidiStream[conformancev1.BidiStreamRequest, conformancev1.BidiStreamResponse],
) error {
	b := bidi{stream: stream}
	for {
		if err := ctx.Err(); err != nil {
			return contextError(err)
		}
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		more, err := b.receive(ctx, req)
		if err != nil {
			return err
		}
		if !more {
			// Full duplex with every response sent: skip the rest.
			break
		}
	}
	return b.finish(ctx)
}

// bidi is the state of one BidiStream call.
type bidi struct {
	stream     *connect.BidiStream[conformancev1.BidiStreamRequest, conformancev1.BidiStreamResponse]
	started    bool
	def        *conformancev1.StreamResponseDefinition
	fullDuplex bool
	sent       int
	reqs       []*anypb.Any // received since the last response
}

// receive records req and, in full duplex, answers it. It reports false when
// full duplex has no response left to send.
func (b *bidi) receive(ctx context.Context, req *conformancev1.BidiStreamRequest) (bool, error) {
	reqAny, err := asAny(req)
	if err != nil {
		return false, err
	}
	b.reqs = append(b.reqs, reqAny)
	if !b.started {
		b.started = true
		b.def, b.fullDuplex = req.GetResponseDefinition(), req.GetFullDuplex()
		addHeaders(b.stream.ResponseHeader(), b.def.GetResponseHeaders())
		addHeaders(b.stream.ResponseTrailer(), b.def.GetResponseTrailers())
		if b.fullDuplex && len(b.def.GetResponseData()) > 0 {
			// Headers can go now only in full duplex: a half-duplex client
			// reads nothing until it has sent everything.
			if err := b.stream.Send(nil); err != nil {
				return false, sendError(err)
			}
		}
	}
	if !b.fullDuplex {
		return true, nil
	}
	if b.sent >= len(b.def.GetResponseData()) {
		return false, nil
	}
	var info *conformancev1.ConformancePayload_RequestInfo
	if b.sent == 0 {
		info = requestInfo(ctx, b.stream.RequestHeader(), b.reqs)
	} else {
		// Only the requests change after the first response.
		info = &conformancev1.ConformancePayload_RequestInfo{Requests: b.reqs}
	}
	if err := b.send(ctx, info); err != nil {
		return false, err
	}
	b.reqs = nil
	return true, nil
}

// finish sends the responses not sent yet (all of them in half duplex, those
// beyond the number of requests in full duplex), then the error if any.
func (b *bidi) finish(ctx context.Context) error {
	if !b.fullDuplex && len(b.def.GetResponseData()) > 0 {
		if err := b.stream.Send(nil); err != nil {
			return sendError(err)
		}
	}
	for b.sent < len(b.def.GetResponseData()) {
		var info *conformancev1.ConformancePayload_RequestInfo
		if b.sent == 0 {
			info = requestInfo(ctx, b.stream.RequestHeader(), b.reqs)
		}
		if err := b.send(ctx, info); err != nil {
			return err
		}
	}
	if b.def.GetError() == nil {
		return nil
	}
	if b.sent == 0 {
		return connectError(b.def.GetError(), requestInfo(ctx, b.stream.RequestHeader(), b.reqs))
	}
	return connectError(b.def.GetError(), nil)
}

// send waits for the response delay, then sends the next response with info.
func (b *bidi) send(ctx context.Context, info *conformancev1.ConformancePayload_RequestInfo) error {
	if err := sleep(ctx, time.Duration(b.def.GetResponseDelayMs())*time.Millisecond); err != nil {
		return err
	}
	resp := &conformancev1.BidiStreamResponse{Payload: &conformancev1.ConformancePayload{
		Data:        b.def.GetResponseData()[b.sent],
		RequestInfo: info,
	}}
	if err := b.stream.Send(resp); err != nil {
		return sendError(err)
	}
	b.sent++
	return nil
}
