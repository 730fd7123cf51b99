package pubsub

import (
	"context"
	"net/http"
	"runtime"
	"testing"
	"weak"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"google.golang.org/protobuf/proto"
)

// A handler that keeps its message (a cache, an in-memory projection)
// keeps the message alone, not the delivery's state with it.
func TestKeptMessageKeepsNoDelivery(t *testing.T) {
	var kept *pingv1.PingRequest
	call, newState, err := chainOf("/kept/s", func(_ context.Context, m *pingv1.PingRequest) error {
		kept = m
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(&pingv1.PingRequest{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	st := newState()
	st.header = http.Header{}
	st.ctx = stateContext{Context: context.Background(), st: st}
	if err := call(&st.ctx, st, data, ContentTypeProto); err != nil {
		t.Fatal(err)
	}
	state := weak.Make(st)
	st = nil
	runtime.GC()
	if state.Value() != nil {
		t.Error("the kept message keeps its delivery's state")
	}
	if kept.GetText() != "hi" {
		t.Errorf("kept message %v, want text hi", kept)
	}
}
