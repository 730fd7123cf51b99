package interceptors_test

import (
	"context"
	"net/http"
	"reflect"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// A delivery's headers are a message's, whose keys may be in any case (a
// producer of another kind wrote them): they match as a call's do, and go
// on under their canonical names. (kit's tests run the calls end to end:
// kit/forwardheaders_test.go.)
func TestForwardHeadersAnyCase(t *testing.T) {
	t.Parallel()
	fwd, err := interceptors.ForwardHeaders("X-MD-GLOBAL-*", "x-tenant")
	if err != nil {
		t.Fatal(err)
	}
	var sent http.Header
	outgoing := fwd.WrapUnary(func(_ context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		sent = req.Header().Clone()
		return nil, nil
	})
	served := fwd.WrapUnary(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		return outgoing(ctx, &clientSpecRequest{specRequest{connect.NewRequest(&pingv1.PingRequest{}), pingv1connect.PingServicePingProcedure}})
	})
	req := &specRequest{connect.NewRequest(&pingv1.PingRequest{}), pingv1connect.PingServicePingProcedure}
	for k, v := range map[string][]string{
		"x-md-global-tenant": {"acme"}, "X-TENANT": {"t1"}, "x-md-local": {"no"},
		"x-md-global-authorization": {"a"}, // not a credential: only Authorization is
		"authorization":             {"no"},
	} {
		req.Header()[k] = v
	}
	if _, err := served(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"X-Md-Global-Tenant": {"acme"}, "X-Tenant": {"t1"}, "X-Md-Global-Authorization": {"a"}}
	if !reflect.DeepEqual(sent, want) {
		t.Errorf("sent %v, want %v", sent, want)
	}
}
