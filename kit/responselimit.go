package kit

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// responseLimit fails a unary call whose response message is larger than
// KIT_MAX_RESPONSE_BYTES with ResourceExhausted, inside the chain, so that
// the call is logged and counted as the client sees it.
//
// connect checks its send limit only when it marshals the response, after
// every interceptor has returned: the log line and the metrics said OK
// while the client got ResourceExhausted. And connect measures the
// compressed message when the client accepts gzip, so the same call
// succeeded for one client (connect-node, grpcio) and failed for another
// (curl, grpc-go without gzip). Measured here, the limit is the message's
// protobuf size for every client, as it is for requests (after
// decompression) and for the clients of [Server.ClientOptions], which
// inflate a response no further. connect's own check stays: a JSON
// encoding is larger than the protobuf one, so a JSON client can still get
// ResourceExhausted, logged OK, for a message under the limit whose JSON
// is over it (measuring that here would marshal it twice). Streams need
// none of this: their Send returns connect's error to the handler.
type responseLimit int

func (l responseLimit) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		// Read before the call: a handler that passes its own request to
		// a connect client gets it back with the client call's spec.
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		res, err := next(ctx, req)
		if err != nil || res == nil {
			return res, err
		}
		if msg, ok := res.Any().(proto.Message); ok {
			if empty, ok := msg.(*emptypb.Empty); ok && len(empty.ProtoReflect().GetUnknown()) == 0 {
				// Of size 0, under any limit (at least 1): every pubsub
				// delivery answers so, where proto.Size took ~230
				// instructions (callgrind, BENCHMARKS.md section 3).
				return res, nil
			}
			if size := proto.Size(msg); size > int(l) {
				return nil, connect.NewError(connect.CodeResourceExhausted,
					fmt.Errorf("response message size %d exceeds the server's limit of %d bytes", size, int(l)))
			}
		}
		return res, nil
	}
}

func (l responseLimit) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (l responseLimit) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
