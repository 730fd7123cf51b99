package interceptors

import (
	"context"
	"net/http"
	"net/textproto"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/connctx"
)

// RequestIDHeader is read with header.Get, which finds what http.Header.Get
// finds only for a key in canonical form.
func TestRequestIDHeaderIsCanonical(t *testing.T) {
	if c := textproto.CanonicalMIMEHeaderKey(RequestIDHeader); c != RequestIDHeader {
		t.Errorf("RequestIDHeader %q is not canonical (%q)", RequestIDHeader, c)
	}
}

// A unary gRPC call whose id kit's server echoed over HTTP/2
// (connctx.StreamEcho) gets that id, and its connection's version,
// HTTP/2.0, without a walk of its context for the connection's State:
// here the context has none, and the version is still known.
func TestServerUnaryRequestIDOfAStreamEcho(t *testing.T) {
	t.Parallel()
	req := connect.NewRequest(&struct{}{})
	req.Header().Set(RequestIDHeader, "abc")
	var e connctx.StreamEcho
	resp := http.Header{}
	e.Echo(req.Header(), resp)
	cc, c, how := serverUnaryRequestID(context.Background(), req, true, true)
	s, ok := cc.(*servedContext)
	if !ok || c.id != "abc" || how != echoedUnlessError {
		t.Fatalf("serverUnaryRequestID = %T, %q, %v; want a servedContext, abc, echoedUnlessError", cc, c.id, how)
	}
	if s.version != 20 {
		t.Errorf("the call's HTTP version %v; want HTTP/2.0", s.version)
	}
	if _, _, how := serverUnaryRequestID(context.Background(), req, true, false); how != notEchoed {
		t.Errorf("for a call that is not gRPC, %v; want notEchoed", how)
	}
	e.Settle(resp)
	if got := resp.Values(RequestIDHeader); len(got) != 1 || got[0] != "abc" {
		t.Errorf("the response's X-Request-Id %q; want abc, kept for a call that reached the chain", got)
	}
}
