package interceptors

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/connctx"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
)

// formatUUIDv4 says what google/uuid's NewRandom and String say of the
// same 128 bits, for edge cases and many random ones.
func TestFormatUUIDv4(t *testing.T) {
	t.Parallel()
	reference := func(hi, lo uint64) string {
		var u [16]byte
		binary.BigEndian.PutUint64(u[:8], hi)
		binary.BigEndian.PutUint64(u[8:], lo)
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80 // variant 10
		return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	}
	inputs := [][2]uint64{{0, 0}, {^uint64(0), ^uint64(0)}, {0x0123456789abcdef, 0xfedcba9876543210}}
	for d := range uint64(16) { // every digit in every place
		inputs = append(inputs, [2]uint64{d * 0x1111111111111111, d * 0x1111111111111111})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		inputs = append(inputs, [2]uint64{r.Uint64(), r.Uint64()})
	}
	for _, in := range inputs {
		got, want := formatUUIDv4(in[0], in[1]), reference(in[0], in[1])
		if got != want {
			t.Fatalf("formatUUIDv4(%#x, %#x) = %s; want %s", in[0], in[1], got, want)
		}
	}
	if got := formatUUIDv4(0, 0); got != "00000000-0000-4000-8000-000000000000" {
		t.Errorf("formatUUIDv4(0, 0) = %s; want version 4 and variant 10 set", got)
	}
	if got := formatUUIDv4(^uint64(0), ^uint64(0)); got != "ffffffff-ffff-4fff-bfff-ffffffffffff" {
		t.Errorf("formatUUIDv4(all ones) = %s; want version 4 and variant 10 set", got)
	}
}

// RequestIDHeader is read with header.Get, which finds what http.Header.Get
// finds only for a key in canonical form.
func TestRequestIDHeaderIsCanonical(t *testing.T) {
	if c := textproto.CanonicalMIMEHeaderKey(RequestIDHeader); c != RequestIDHeader {
		t.Errorf("RequestIDHeader %q is not canonical (%q)", RequestIDHeader, c)
	}
}

// TestEchoRequestIDToTheServedResponse checks that on a connection that
// records the request it serves (kit's, over HTTP/1.x), a unary call's id
// goes straight to the HTTP response's header, not to the response's own,
// which connect would then have to make; and that it does so only when the
// header is the served request's and the handler set no id of its own.
func TestEchoRequestIDToTheServedResponse(t *testing.T) {
	t.Parallel()
	call := func(t *testing.T, serve bool, handlerID, already string) (httpResp http.Header, resp connect.AnyResponse) {
		t.Helper()
		ctx := connctx.NewContext(context.Background())
		req := connect.NewRequest(&pingv1.PingRequest{})
		req.Header().Set(RequestIDHeader, "call-1")
		httpResp = http.Header{}
		if already != "" {
			httpResp.Set(RequestIDHeader, already)
		}
		if serve {
			connctx.FromContext(ctx).Serve(req.Header(), httpResp)
		} else {
			connctx.FromContext(ctx).Serve(http.Header{}, httpResp) // another request's
		}
		next := func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
			r := connect.NewResponse(&pingv1.PingResponse{})
			if handlerID != "" {
				r.Header().Set(RequestIDHeader, handlerID)
			}
			return r, nil
		}
		resp, err := RequestID().WrapUnary(next)(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return httpResp, resp
	}
	for _, tc := range []struct {
		name                  string
		serve                 bool
		handlerID, already    string
		wantHTTP, wantOwnResp []string
	}{
		{name: "served", serve: true, wantHTTP: []string{"call-1"}},
		{name: "served, a value already there", serve: true, already: "mw", wantHTTP: []string{"mw", "call-1"}},
		{name: "served, the handler set one", serve: true, handlerID: "handler", wantOwnResp: []string{"call-1"}},
		{name: "another request served", wantOwnResp: []string{"call-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			httpResp, resp := call(t, tc.serve, tc.handlerID, tc.already)
			if got := httpResp.Values(RequestIDHeader); !slices.Equal(got, tc.wantHTTP) {
				t.Errorf("HTTP response header: %q; want %q", got, tc.wantHTTP)
			}
			if got := resp.Header().Values(RequestIDHeader); !slices.Equal(got, tc.wantOwnResp) {
				t.Errorf("the response's own header: %q; want %q", got, tc.wantOwnResp)
			}
		})
	}
}
