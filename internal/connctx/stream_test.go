package connctx

import (
	"net/http"
	"slices"
	"testing"
)

// StreamEchoed finds the id Echo wrote for the request's own header, not
// for a copy of it or a header whose X-Request-Id was replaced, and marks
// the call chained; Settle keeps kit's id only then, and not when the
// chain sent the id in trailers.
func TestStreamEcho(t *testing.T) {
	t.Parallel()
	var e StreamEcho
	req, resp := http.Header{"X-Request-Id": {"abc"}}, http.Header{}
	e.Echo(req, resp)
	if got := resp.Values("X-Request-Id"); !slices.Equal(got, []string{"abc"}) || req.Get("X-Request-Id") != "abc" {
		t.Fatalf("response X-Request-Id %q, request's %q; want the request's", got, req.Get("X-Request-Id"))
	}
	if _, ok := StreamEchoed(req.Clone()); ok {
		t.Error("StreamEchoed found the id in a copy of the request's header")
	}
	if _, ok := StreamEchoed(http.Header{"X-Request-Id": {"abc"}}); ok {
		t.Error("StreamEchoed found the id in another header")
	}
	if e.chained.Load() {
		t.Error("a call marked chained by lookups that found nothing")
	}
	if id, ok := StreamEchoed(req); !ok || id != "abc" {
		t.Fatalf("StreamEchoed = %q, %v; want abc, true", id, ok)
	}
	req.Set("X-Request-Id", "changed") // by a handler, after the chain found it
	if e.resp[0] != "abc" {
		t.Errorf("the response's id became %q with the request's", e.resp[0])
	}
	e.Settle(resp)
	if got := resp.Values("X-Request-Id"); !slices.Equal(got, []string{"abc"}) {
		t.Errorf("after Settle, X-Request-Id %q; want kit's, kept", got)
	}

	var generated StreamEcho
	req, resp = http.Header{"X-Request-Id": {"bad id"}}, http.Header{}
	generated.Echo(req, resp)
	id, ok := StreamEchoed(req)
	if !ok || id == "bad id" || len(id) != 36 || resp.Get("X-Request-Id") != id {
		t.Errorf("for an invalid id, StreamEchoed = %q, %v and the response has %q; want one new id", id, ok, resp.Get("X-Request-Id"))
	}
	resp["Trailer:X-Request-Id"] = []string{id} // an error's metadata
	generated.Settle(resp)
	if got := resp.Values("X-Request-Id"); len(got) != 0 {
		t.Errorf("with the id in trailers, X-Request-Id %q in the header; want none", got)
	}
}

// A call that did not reach the chain carries no id of kit's; a chain
// that echoed one of its own (the request's header replaced or copied on
// the way) sends its own alone.
func TestStreamEchoUnchained(t *testing.T) {
	t.Parallel()
	var refused StreamEcho
	resp := http.Header{}
	refused.Echo(http.Header{}, resp)
	refused.Settle(resp)
	if _, ok := resp["X-Request-Id"]; ok {
		t.Errorf("a call that did not reach the chain: X-Request-Id %q; want none", resp.Values("X-Request-Id"))
	}
	var cloned StreamEcho
	req := http.Header{"X-Request-Id": {"abc"}}
	resp = http.Header{}
	cloned.Echo(req, resp)
	resp["X-Request-Id"] = append(resp["X-Request-Id"], "abc") // connect's copy of the chain's
	cloned.Settle(resp)
	cloned.Settle(http.Header{}) // once only
	if got := resp.Values("X-Request-Id"); !slices.Equal(got, []string{"abc"}) {
		t.Errorf("X-Request-Id %q; want the chain's, once", got)
	}
	var answered StreamEcho
	req = http.Header{"X-Request-Id": {"abc"}}
	resp = http.Header{}
	answered.Echo(req, resp)
	resp.Set("X-Request-Id", req.Get("X-Request-Id")) // a handler's own, before connect
	answered.Settle(resp)
	if got := resp.Values("X-Request-Id"); !slices.Equal(got, []string{"abc"}) {
		t.Errorf("X-Request-Id %q; want the handler's own, kept", got)
	}
}

// Echo, StreamEchoed and Settle allocate nothing but the response
// header's entry: the id's bytes are the record's. Not parallel:
// testing.AllocsPerRun.
func TestStreamEchoAllocatesNothing(t *testing.T) {
	req, resp := http.Header{"Content-Type": {"application/grpc"}}, http.Header{"Content-Type": {"application/grpc"}, "X-Request-Id": nil}
	var e StreamEcho
	allocs := testing.AllocsPerRun(100, func() {
		delete(req, "X-Request-Id")
		e.settled, e.echoing = false, false
		e.chained.Store(false)
		e.Echo(req, resp)
		if _, ok := StreamEchoed(req); !ok {
			t.Fatal("StreamEchoed found no id")
		}
		e.Settle(resp)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations a call; want 0", allocs)
	}
}
