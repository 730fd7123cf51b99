package pubsub

import (
	"context"
	"testing"

	"connectrpc.com/connect"
)

// TestChainKeys checks that connect's chain still looks values up before
// each interceptor, which a delivery's context answers from the handlers'
// context: if connect stops, the delivery's context answers nothing from it.
func TestChainKeys(t *testing.T) {
	t.Parallel()
	keys := chainKeys()
	if len(keys) != 2 {
		t.Fatalf("chainKeys() = %v, want connect's two keys", keys)
	}
	// A context made by connect.NewClientContext holds the first.
	ctx, _ := connect.NewClientContext(context.Background())
	kv := knownValuesOf(ctx, keys)
	if kv.values[0] == nil || kv.values[1] != nil {
		t.Errorf("values in a client context = %v, want the first key's only", kv.values)
	}
	st := &deliveryState{}
	st.ctx = stateContext{Context: ctx, st: st, known: kv}
	for i, k := range keys {
		if got, want := st.ctx.Value(k), ctx.Value(k); got != want {
			t.Errorf("the delivery's context answers key %d with %v, its parent with %v", i, got, want)
		}
	}
}
