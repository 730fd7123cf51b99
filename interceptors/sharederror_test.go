package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// errShared and errSharedMeta are errors a service keeps in package
// variables and returns from every call that fails so, as services
// commonly do; errSharedMeta has metadata of its own.
var (
	errShared     = connect.NewError(connect.CodeNotFound, errors.New("no such thing"))
	errSharedMeta = func() *connect.Error {
		err := connect.NewError(connect.CodeNotFound, errors.New("no such thing"))
		err.Meta().Set("X-Reason", "gone")
		return err
	}()
)

type sharedErrorPing struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (sharedErrorPing) Fail(_ context.Context, req *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	if req.Header().Get("X-Want-Meta") != "" {
		return nil, errSharedMeta
	}
	return nil, fmt.Errorf("looking it up: %w", errShared)
}

// A *connect.Error that handlers share (a package variable, returned by
// many calls at once) is not written to: each call echoes its own request
// id, its own metadata too, and the shared error keeps only its own.
func TestRequestIDOnSharedError(t *testing.T) {
	t.Parallel()
	o := newObserved(t, 0)
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(sharedErrorPing{}, connect.WithInterceptors(o.chain.Server()...)))
	url := serve(t, interceptors.HTTPVersion(mux))
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			client := pingv1connect.NewPingServiceClient(httpClient(t, false), url, proto.opts...)
			var wg sync.WaitGroup
			for i := range 32 {
				wg.Go(func() {
					id := fmt.Sprintf("%s-%d", proto.name, i)
					req := connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)})
					req.Header().Set(interceptors.RequestIDHeader, id)
					withMeta := i%2 == 1
					if withMeta {
						req.Header().Set("X-Want-Meta", "1")
					}
					_, err := client.Fail(t.Context(), req)
					var ce *connect.Error
					if !errors.As(err, &ce) || ce.Code() != connect.CodeNotFound || ce.Message() != "no such thing" {
						t.Errorf("Fail = %v, want not_found: no such thing", err)
						return
					}
					if got := ce.Meta().Values(interceptors.RequestIDHeader); len(got) != 1 || got[0] != id {
						t.Errorf("X-Request-Id = %q, want [%q]", got, id)
					}
					if got := ce.Meta().Get("X-Reason"); withMeta && got != "gone" {
						t.Errorf("X-Reason = %q, want the shared error's own %q", got, "gone")
					}
				})
			}
			wg.Wait()
		})
	}
	t.Cleanup(func() {
		if meta := errShared.Meta(); len(meta) != 0 {
			t.Errorf("the shared error's metadata = %v, want none", meta)
		}
		if meta := errSharedMeta.Meta(); len(meta) != 1 {
			t.Errorf("the shared error's metadata = %v, want its X-Reason alone", meta)
		}
	})
}
