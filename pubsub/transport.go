package pubsub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/header"
	"github.com/connectkit/connectkit/internal/msgctx"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// A publish reaches the client chain as a unary call to the topic's
// PublishProcedure, without crossing connect's client: the chain runs on a
// publishRequest that answers Spec, Peer and Header as connect's client
// prepares them for a network call, and ends in the sender, which hands the
// message to the broker. Calling the chain through connect's client cost a
// publish ten allocations more, most of them to write protocol headers
// (Connect-Protocol-Version, User-Agent, Accept-Encoding) that the message
// must not carry (BenchmarkPublishPath). This is hand-written because
// connect offers no way to call a client chain with a request of its own.
//
// The call info of a context made by connect.NewClientContext is read by
// connect's client only, and connect's chain rejects a context that has one
// the client did not see. A publish under such a context fails at once,
// before any interceptor runs, and goes through connect's client instead:
// the sender then deletes the protocol headers.

// publishRequest is the request of one publish. It embeds connect.Request
// (the message, and the unexported methods that make it an AnyRequest).
type publishRequest[M any] struct {
	connect.Request[M]
	p      *Publisher[M]
	call   *publishCall
	header http.Header
}

func (r *publishRequest[M]) Spec() connect.Spec  { return r.p.spec }
func (r *publishRequest[M]) Peer() connect.Peer  { return r.p.peer }
func (r *publishRequest[M]) Header() http.Header { return r.header }

// HTTPMethod is empty until the sender ran, as connect's client reports it
// until it sent the request.
func (r *publishRequest[M]) HTTPMethod() string {
	if r.call.sent {
		return http.MethodPost
	}
	return ""
}

func (r *publishRequest[M]) publishCall() *publishCall { return r.call }

// MessageInfo answers msgctx.ForRequest: the interceptors find the
// publish's Info without a walk of the context.
func (r *publishRequest[M]) MessageInfo() *msgctx.Info { return &r.call.info }

// clientProbe is the outermost interceptor of a Publisher's connect client.
// connect wraps the chain when it builds the client, and hands clientProbe
// the whole chain, which it keeps. The call NewPublisher makes through the
// client ends in clientProbe before any other interceptor runs: it reports
// the client's own errors (options connect rejects) and the spec, peer and
// content type that connect prepared, which every publish then presents.
// Later calls through the client (under a connect.NewClientContext) go on.
type clientProbe struct {
	chain       connect.UnaryFunc
	through     bool // probing done: calls go on to the chain
	spec        connect.Spec
	peer        connect.Peer
	contentType string
}

// errProbed ends the probing call.
var errProbed = errors.New("pubsub: probed")

func (c *clientProbe) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	c.chain = next
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if c.through {
			return next(ctx, req)
		}
		c.spec, c.peer, c.contentType = req.Spec(), req.Peer(), req.Header().Get(HeaderContentType)
		return nil, errProbed
	}
}

func (*clientProbe) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (*clientProbe) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// check checks the error of the probing call, and what the probe found.
func (c *clientProbe) check(err error) error {
	if !errors.Is(err, errProbed) { // connect rejected the client's options
		return fmt.Errorf("pubsub: NewPublisher: %w", err)
	}
	if c.chain == nil {
		return errors.New("pubsub: NewPublisher: connect did not build the client chain")
	}
	if c.peer.Protocol != connect.ProtocolConnect || (c.contentType != ContentTypeProto && c.contentType != ContentTypeJSON) {
		return fmt.Errorf("pubsub: NewPublisher: the client options make a publish a %s call with content type %q: "+
			"they must keep the Connect protocol and its proto or JSON codec (no connect.WithGRPC, WithGRPCWeb, or codec of another name)",
			c.peer.Protocol, c.contentType)
	}
	return nil
}

// sender is the innermost interceptor of every Publisher's client chain: it
// ends the unary call there, handing the request message and headers to the
// broker, and answers with an empty response. The headers the chain set
// (traceparent, X-Request-Id, auth) travel with the message.
//
// It encodes the message by the request's Content-Type, which the publisher
// sets as connect's client would: protobuf binary, or protobuf JSON with
// connect.WithProtoJSON (which [WithJSON] passes). Client options that act
// below the chain do not apply to messages: compression, send size limits
// (the broker has its own), codecs of other names.
type sender struct {
	broker   Broker
	topic    string
	typeName []string // the HeaderMessageType value, shared read-only
}

// unreachable is the HTTP client of a Publisher's connect client, which no
// call reaches: each ends in the probe or in the sender.
type unreachable struct{}

func (unreachable) Do(*http.Request) (*http.Response, error) {
	return nil, errors.New("pubsub: a publish reached the publisher's HTTP client")
}

func (s *sender) WrapUnary(connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		var call *publishCall
		r, ours := req.(interface{ publishCall() *publishCall })
		if ours {
			call = r.publishCall()
		} else { // connect's client's, or an interceptor's
			call, _ = ctx.Value(publishCallKey{}).(*publishCall)
		}
		if call == nil {
			return nil, connect.NewError(connect.CodeInternal, errors.New(
				"pubsub: an interceptor replaced both the request and the context of a publish: the message cannot be sent"))
		}
		data, err := encode(req)
		if err != nil {
			return nil, err
		}
		h := req.Header()
		if !ours {
			h = messageHeader(h)
		}
		h[HeaderMessageType] = s.typeName
		// Only a re-drive carries it, from its dead letter: one set by the
		// chain (a header copied from a re-driven message the handler
		// got, or forged) would give this new message another's time.
		delete(h, HeaderOriginalTime)
		msg := &Message{
			ID:          call.info.MessageID,
			Deduplicate: call.dedup,
			Topic:       s.topic,
			Header:      h,
			Data:        data,
		}
		call.sent = true
		conf, err := s.broker.Publish(ctx, msg)
		if err == nil && !call.async {
			err = conf.Wait(ctx)
		}
		if err != nil {
			return nil, brokerError(ctx, err)
		}
		call.conf = conf
		call.resp.Msg = emptyMessage
		return &call.resp, nil
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
	switch ct := header.Get(req.Header(), HeaderContentType); ct {
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

// messageHeader deletes from h the headers of the Connect protocol and of
// HTTP that connect's client sets, which a message does not carry.
func messageHeader(h http.Header) http.Header {
	for _, k := range [...]string{"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Accept-Encoding",
		"Accept-Encoding", "User-Agent", "Content-Length", "Host"} {
		delete(h, k)
	}
	return h
}

// errClientContext returns the error with which connect's chain rejects a
// context that has call info its client did not see, taken from a chain of
// connect's own.
var errClientContext = sync.OnceValue(func() error {
	chain := probeChain(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc { return next }))
	if chain == nil {
		return errors.New("pubsub: connect built no client chain")
	}
	ctx, _ := connect.NewClientContext(context.Background())
	_, err := chain(ctx, connect.NewRequest(&emptypb.Empty{}))
	return err
})

// probeChain returns the chain that connect's client builds around
// interceptor, or nil if it built none.
func probeChain(interceptor connect.Interceptor) connect.UnaryFunc {
	var chain connect.UnaryFunc
	connect.NewClient[emptypb.Empty, emptypb.Empty](unreachable{}, "http://probe/probe",
		connect.WithInterceptors(chainCapture{&chain}, interceptor))
	return chain
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
