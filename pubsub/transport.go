package pubsub

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// sender is the innermost interceptor of every Publisher's client chain: it
// ends the unary call there, handing the request message and headers to the
// broker, and answers with an empty response. Every interceptor of the chain
// runs around it on a request that connect's client prepared as for a
// network call (spec, peer, protocol headers), so the headers they set
// (traceparent, auth) travel with the message; what it skips is connect's
// HTTP machinery (request, body pipe, response parsing), which a message
// never crosses and which cost two thirds of a publish's own CPU (before the
// broker's): BenchmarkPublishPath.
//
// It encodes the message as the client's codec would, by the Content-Type
// connect set: protobuf binary, or protobuf JSON with connect.WithProtoJSON
// (which [WithJSON] passes). Client options that act below the chain do not
// apply to messages: compression, send size limits (the broker has its own),
// custom codecs.
type sender struct {
	broker   Broker
	topic    string
	typeName []string // the HeaderMessageType value, shared read-only
}

// unreachable is the HTTP client of a Publisher's connect client, which the
// sender never lets a call reach.
type unreachable struct{}

func (unreachable) Do(*http.Request) (*http.Response, error) {
	return nil, errors.New("pubsub: the publish did not end in the publisher's sender interceptor")
}

func (s *sender) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		call, _ := ctx.Value(publishCallKey{}).(*publishCall)
		if call == nil {
			return next(ctx, req) // to unreachable
		}
		data, err := encode(req)
		if err != nil {
			return nil, err
		}
		msg := &Message{
			ID:          call.info.MessageID,
			Deduplicate: call.dedup,
			Topic:       s.topic,
			Header:      messageHeader(req.Header(), s.typeName),
			Data:        data,
		}
		conf, err := s.broker.Publish(ctx, msg)
		if err == nil && !call.async {
			err = conf.Wait(ctx)
		}
		if err != nil {
			return nil, brokerError(ctx, err)
		}
		call.conf = conf
		return connect.NewResponse(emptyMessage), nil
	}
}

func (s *sender) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (s *sender) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// encode marshals the request's message with the codec that connect named in
// its Content-Type.
func encode(req connect.AnyRequest) ([]byte, error) {
	msg, ok := req.Any().(proto.Message)
	if !ok {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("pubsub: %T is not a protobuf message", req.Any()))
	}
	var data []byte
	var err error
	switch ct := req.Header().Get(HeaderContentType); ct {
	case ContentTypeProto:
		data, err = proto.Marshal(msg)
	case ContentTypeJSON:
		data, err = protojson.Marshal(msg)
	default:
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf(
			"pubsub: publish request has content type %q: the publisher's client options must keep the Connect protocol and its proto or JSON codec (no connect.WithGRPC, WithGRPCWeb, or codec of another name)", ct))
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("pubsub: failed to encode %T: %w", msg, err))
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// messageHeader turns the request's headers into the message's: it deletes
// those of the Connect protocol and of HTTP itself, and adds the message
// type. The request is done with them: the broker takes them.
func messageHeader(h http.Header, typeName []string) http.Header {
	for _, k := range [...]string{"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Accept-Encoding",
		"Accept-Encoding", "User-Agent", "Content-Length", "Host"} {
		delete(h, k)
	}
	h[HeaderMessageType] = typeName
	return h
}

// brokerError gives a broker's error the Connect code a caller can act on.
func brokerError(ctx context.Context, err error) error {
	var ce *connect.Error
	switch {
	case errors.As(err, &ce):
		return err
	case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	default:
		return connect.NewError(connect.CodeUnavailable, err)
	}
}
