package pubsub

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/msgctx"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// A delivery reaches the handler chain as a unary request to the
// subscription's procedure, without crossing connect's HTTP handling: an
// HTTP request served in-process by connect's handler (pubsub's first
// design) cost a delivery 3–6 µs and 24 allocations more
// (BenchmarkDeliveryDesign). connect builds the chain from the opaque
// HandlerOptions; chainOf takes the chain from it, and deliveryRequest is
// the request the chain then sees. This is hand-written because connect
// offers no way to call a handler chain with a request of a given Spec.

// deliveryRequest is the request of one delivery. It embeds connect.Request
// (the message, and the unexported methods that make it an AnyRequest) and
// answers Spec, Peer, Header and HTTPMethod as connect's handler would for a
// Connect-protocol POST.
type deliveryRequest[M any] struct {
	connect.Request[M]
	spec   *connect.Spec
	header http.Header
	st     *deliveryState
}

func (r *deliveryRequest[M]) Spec() connect.Spec { return *r.spec }

// Peer has no address: that is how msgctx.ForCall tells a delivery from a
// call served from the network.
func (r *deliveryRequest[M]) Peer() connect.Peer {
	return connect.Peer{Protocol: connect.ProtocolConnect}
}
func (r *deliveryRequest[M]) Header() http.Header { return r.header }
func (r *deliveryRequest[M]) HTTPMethod() string  { return http.MethodPost }

// MessageInfo answers msgctx.ForRequest: the interceptors find the
// delivery's Info without a walk of the context.
func (r *deliveryRequest[M]) MessageInfo() *msgctx.Info { return &r.st.info }

// chainCapture is the outermost interceptor of the handler connect builds
// for a subscriber: connect wraps the chain when it builds the handler, and
// hands chainCapture the whole chain, which it keeps.
type chainCapture struct{ chain *connect.UnaryFunc }

func (c chainCapture) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	*c.chain = next
	return next
}

func (chainCapture) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (chainCapture) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// callHandler is the innermost interceptor of a subscriber's chain: it ends
// the call in the user's handler.
type callHandler[M any] func(context.Context, *M) error

func (h callHandler[M]) WrapUnary(connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		msg, ok := req.Any().(*M)
		if !ok {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("pubsub: the handler chain passed a %T, want %T", req.Any(), msg))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var st *deliveryState
		if r, ok := req.(*deliveryRequest[M]); ok {
			st = r.st
		} else {
			st = stateFrom(ctx) // an interceptor replaced the request
		}
		if st == nil { // and detached the context from the delivery's
			if err := h(ctx, msg); err != nil {
				return nil, err
			}
			return connect.NewResponse(emptyMessage), nil
		}
		st.header = req.Header()
		if err := h(ctx, msg); err != nil {
			st.info.Permanent = IsPermanent(err)
			return nil, err
		}
		st.resp.Msg = emptyMessage
		return &st.resp, nil
	}
}

func (callHandler[M]) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (callHandler[M]) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// emptyMessage is the response of every delivery; marshaling only reads it.
var emptyMessage = &emptypb.Empty{}

// callFunc decodes a delivery's payload and calls the handler chain on it.
// st is one that the chain's stateFunc made.
type callFunc func(ctx context.Context, st *deliveryState, data []byte, contentType string) error

// stateFunc returns a new delivery's state, allocated with the request that
// the chain sees, which callFunc fills in: one allocation for both instead
// of two (a delivery's allocations cost it ~300 instructions each in the
// allocator and the collector, callgrind, BENCHMARKS.md section 3).
type stateFunc func() *deliveryState

// deliveryOp is a delivery's state and its request, in one allocation.
type deliveryOp[M any] struct {
	st  deliveryState
	req deliveryRequest[M]
}

// chainOf returns the callFunc of handle under the interceptors of opts,
// which connect composes in its documented order (the first outermost),
// and the stateFunc of its deliveries.
func chainOf[M any](procedure string, handle func(context.Context, *M) error, opts []connect.HandlerOption) (callFunc, stateFunc, error) {
	var chain connect.UnaryFunc
	all := make([]connect.HandlerOption, 0, len(opts)+2)
	all = append(all, connect.WithInterceptors(chainCapture{&chain}))
	all = append(all, opts...)
	all = append(all, connect.WithInterceptors(callHandler[M](handle)))
	connect.NewUnaryHandler(procedure, func(context.Context, *connect.Request[M]) (*connect.Response[emptypb.Empty], error) {
		return nil, errors.New("pubsub: a delivery reached connect's handler") // callHandler ends every call
	}, all...)
	if chain == nil {
		return nil, nil, errors.New("pubsub: connect did not build the handler chain")
	}
	spec := &connect.Spec{StreamType: connect.StreamTypeUnary, Procedure: procedure}
	newState := func() *deliveryState {
		op := &deliveryOp[M]{}
		op.st.req = &op.req
		return &op.st
	}
	return func(ctx context.Context, st *deliveryState, data []byte, contentType string) error {
		req := st.req.(*deliveryRequest[M])
		req.spec, req.header, req.st = spec, st.header, st
		// The message apart from the request, so that a handler that keeps
		// it (a cache, a projection) does not keep the delivery with it.
		req.Msg = new(M)
		if err := decode(data, contentType, any(req.Msg).(proto.Message)); err != nil {
			return err
		}
		st.ran = true
		_, err := chain(ctx, req)
		return err
	}, newState, nil
}

// decode unmarshals data as connect's codecs of contentType would.
func decode(data []byte, contentType string, msg proto.Message) error {
	var err error
	if contentType == ContentTypeProto {
		err = proto.Unmarshal(data, msg)
	} else {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, msg)
	}
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unmarshal %s message: %w", contentType, err))
	}
	return nil
}
