package pubsub

import (
	"context"
	"errors"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Before each interceptor of a chain, connect looks two values up in the
// call's context, to refuse a context made by connect.NewClientContext that
// its client did not see. Neither is there, so each lookup walks the whole
// context: a delivery's, through the contexts of the interceptors before
// and then through the handlers' context that Subscriber.Run made (which
// holds its caller's). With kit's chain these walks took ~700 instructions
// per delivery below the delivery's own context, of its 150 000 or so
// (callgrind, BENCHMARKS.md section 3). The handlers' context does not
// change, and nothing between it and a delivery's context (the handler's
// deadline) answers connect's keys: Run looks them up once, and the
// delivery's context answers them.

// knownValues are the values of connect's two keys in a context that does
// not change.
type knownValues struct {
	keys   [2]any
	values [2]any
}

// knownValuesOf looks keys up in ctx, and returns nil unless they are
// connect's two.
func knownValuesOf(ctx context.Context, keys []any) *knownValues {
	if len(keys) != 2 {
		return nil
	}
	kv := &knownValues{keys: [2]any(keys)}
	for i, k := range keys {
		kv.values[i] = ctx.Value(k)
	}
	return kv
}

// chainKeys returns the keys that connect's chain looks up in a call's
// context before an interceptor runs, taken from a chain of connect's own:
// none if its first interceptor ran (a connect that looks nothing up).
var chainKeys = sync.OnceValue(func() (keys []any) {
	// A connect whose check panics on the probe's values: no keys, rather
	// than a panic in every Run (sync.OnceValue panics again each time).
	defer func() {
		if recover() != nil {
			keys = nil
		}
	}()
	reached := false
	chain := probeChain(connect.UnaryInterceptorFunc(func(connect.UnaryFunc) connect.UnaryFunc {
		return func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
			reached = true
			return nil, errProbed
		}
	}))
	if chain == nil {
		return nil
	}
	rec := &keyRecorder{Context: context.Background()}
	_, err := chain(rec, connect.NewRequest(&emptypb.Empty{}))
	if reached || err == nil || errors.Is(err, errProbed) {
		return nil
	}
	return rec.keys
})

// keyRecorder records the keys looked up in it, and answers each lookup
// with a value of its own, so that connect's check fails before the
// interceptor it guards runs.
type keyRecorder struct {
	context.Context
	keys []any
}

func (r *keyRecorder) Value(key any) any {
	r.keys = append(r.keys, key)
	return new(int)
}
