package connctx

import (
	"context"
	"net/http"
	"testing"
)

func TestFromContext(t *testing.T) {
	t.Parallel()
	if s := FromContext(context.Background()); s != nil {
		t.Errorf("FromContext(Background) = %v; want nil", s)
	}
	type other struct{}
	ctx := NewContext(context.Background())
	s, under := FromContext(ctx), FromContext(context.WithValue(ctx, other{}, 1))
	if s == nil || under != s {
		t.Fatalf("FromContext = %p, then %p under another value; want one State", s, under)
	}
	if FromContext(NewContext(ctx)) == s {
		t.Error("NewContext returned the State of its parent")
	}
}

func TestResponseHeader(t *testing.T) {
	t.Parallel()
	req, resp, other := http.Header{}, http.Header{}, http.Header{}
	if h := ResponseHeader(context.Background(), req); h != nil {
		t.Errorf("without a State: %v; want nil", h)
	}
	ctx := NewContext(context.Background())
	s := FromContext(ctx)
	if h := ResponseHeader(ctx, req); h != nil {
		t.Errorf("before Serve: %v; want nil", h)
	}
	s.Serve(req, resp)
	resp.Set("Mark", "resp")
	if h := ResponseHeader(ctx, req); h == nil || h.Get("Mark") != "resp" {
		t.Errorf("while serving: %v; want the response header", h)
	}
	if h := ResponseHeader(ctx, other); h != nil {
		t.Errorf("for another request's header: %v; want nil", h)
	}
	if h := ResponseHeader(ctx, nil); h != nil {
		t.Errorf("for a nil header: %v; want nil", h)
	}
	s.Served()
	if h := ResponseHeader(ctx, req); h != nil {
		t.Errorf("after Served: %v; want nil", h)
	}
}
