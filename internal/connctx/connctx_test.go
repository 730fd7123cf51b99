package connctx

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/connectkit/connectkit/internal/respstatus"
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

// EchoedRequestID finds the id EchoRequestID wrote, for the request it was
// given or a copy of it, and until Served.
func TestEchoedRequestID(t *testing.T) {
	t.Parallel()
	ctx := NewContext(context.Background())
	s := FromContext(ctx)
	req, resp := http.Header{"X-Request-Id": {"abc"}}, http.Header{}
	s.EchoRequestID(req, resp)
	if got := resp.Values("X-Request-Id"); len(got) != 1 || got[0] != "abc" {
		t.Fatalf("response X-Request-Id %q; want the request's", got)
	}
	if id, ok := EchoedRequestID(ctx, req); !ok || id != "abc" {
		t.Errorf("EchoedRequestID = %q, %v; want abc, true", id, ok)
	}
	if id, ok := EchoedRequestID(ctx, req.Clone()); !ok || id != "abc" {
		t.Errorf("for a copy of the request's header, EchoedRequestID = %q, %v; want abc, true", id, ok)
	}
	if _, ok := EchoedRequestID(ctx, http.Header{"X-Request-Id": {"other"}}); ok {
		t.Error("EchoedRequestID found the id for a request with another X-Request-Id")
	}
	if _, ok := EchoedRequestID(context.Background(), req); ok {
		t.Error("EchoedRequestID found an id without a connection")
	}
	s.Served()
	if _, ok := EchoedRequestID(ctx, req); ok {
		t.Error("EchoedRequestID found the id after Served")
	}
	generated := http.Header{"X-Request-Id": {"bad id"}}
	s.EchoRequestID(generated, resp)
	if id, ok := EchoedRequestID(ctx, generated); !ok || id == "bad id" || resp.Get("X-Request-Id") != id {
		t.Errorf("for an invalid id, EchoedRequestID = %q, %v and the response has %q; want one new id", id, ok, resp.Get("X-Request-Id"))
	}
}

// Served reports whether EchoedRequestID found the request's id, that is
// whether the call reached the chain's RequestID interceptor.
func TestServedReportsChained(t *testing.T) {
	t.Parallel()
	ctx := NewContext(context.Background())
	s := FromContext(ctx)
	req := http.Header{"X-Request-Id": {"abc"}}
	s.EchoRequestID(req, http.Header{})
	if s.Served() {
		t.Error("Served = true for a request whose id no interceptor looked up")
	}
	s.EchoRequestID(req, http.Header{})
	if _, ok := EchoedRequestID(ctx, http.Header{"X-Request-Id": {"other"}}); ok {
		t.Fatal("EchoedRequestID found another request's id")
	}
	if s.Served() {
		t.Error("Served = true after a lookup for another request")
	}
	s.EchoRequestID(req, http.Header{})
	if _, ok := EchoedRequestID(ctx, req); !ok {
		t.Fatal("EchoedRequestID did not find the id")
	}
	if !s.Served() {
		t.Error("Served = false for a request whose id the interceptor found")
	}
	if s.Served() {
		t.Error("Served = true with no request recorded")
	}
}

// http1Writer has the optional interfaces of net/http's HTTP/1.x
// ResponseWriter: Hijacker and ReaderFrom.
type http1Writer struct{ *httptest.ResponseRecorder }

func (http1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, http.ErrNotSupported
}
func (w http1Writer) ReadFrom(r io.Reader) (int64, error) { return io.Copy(w.ResponseRecorder, r) }

// An HTTP/1.x request whose id kit makes and echoes, served through a
// recording writer, costs one allocation: the record holds the new id's
// bytes and the writer's call (BENCHMARKS.md 36), which took three. Not
// parallel: testing.AllocsPerRun.
func TestEchoRequestIDAllocatesOnce(t *testing.T) {
	ctx := NewContext(context.Background())
	s := FromContext(ctx)
	req, resp := http.Header{"Content-Type": {"application/json"}}, http.Header{}
	var rw http.ResponseWriter = http1Writer{httptest.NewRecorder()}
	var w respstatus.Writer
	var id string
	allocs := testing.AllocsPerRun(100, func() {
		clear(resp)
		spare := s.EchoRequestID(req, resp)
		w.ResetIn(rw, false, spare)
		id, _ = EchoedRequestID(ctx, req)
		w.Release()
		s.Served()
	})
	if allocs != 1 {
		t.Errorf("EchoRequestID and ResetIn: %.1f allocations a request; want 1", allocs)
	}
	if len(id) != 36 || resp.Get("X-Request-Id") != id {
		t.Errorf("the id %q, the response's %q; want one new UUID", id, resp.Get("X-Request-Id"))
	}
}
