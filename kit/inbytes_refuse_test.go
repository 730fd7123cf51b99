package kit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/authn"
	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// fillBytes fills srv's 250KiB bound (newBytesServer's) with two 100KiB
// gRPC Pings that svc holds in its handler, and returns the bytes they
// reserved and the func that lets them end and checks they were served.
func fillBytes(t *testing.T, srv *kittest.Server, svc *heldPing) (int64, func()) {
	t.Helper()
	call := pingCalls(srv)["grpc"]
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := call(context.Background(), inBytesMessage)
			errs <- err
		}()
	}
	for range 2 {
		select {
		case <-svc.entered:
		case <-time.After(time.Minute):
			t.Fatal("the calls that fill the bound did not reach their handler")
		}
	}
	held, _, _ := kit.InFlightBytes(srv.Server)
	return held, func() {
		t.Helper()
		close(svc.release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("a call that filled the bound: %v", err)
			}
		}
	}
}

// TestMaxInFlightBytesAfterAuth: with KIT_MAX_INFLIGHT_BYTES full, a call
// WithAuth refuses gets Unauthenticated, in every protocol, without
// waiting for bytes (it would be ResourceExhausted once its wait was up)
// and without reserving any (one small enough to fit would raise the
// peak).
func TestMaxInFlightBytesAfterAuth(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"connect", "grpc", "grpcweb", "rest"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var open atomic.Bool // WithAuth lets callers in while set
			open.Store(true)
			svc := &heldPing{entered: make(chan struct{}, 16), release: make(chan struct{})}
			srv := kittest.NewServer(t, kit.Config{MaxInFlightBytes: inBytesLimit}, func(s *kit.Server) {
				s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
			}, kit.WithLogger(slog.New(slog.DiscardHandler)), kit.WithAuth(func(context.Context, *http.Request) (any, error) {
				if open.Load() {
					return testCaller{id: "alice"}, nil
				}
				return nil, authn.Errorf("no bearer token")
			}))
			held, release := fillBytes(t, srv, svc)
			open.Store(false)
			// Without auth first, the call too large for the room left
			// would be refused for its bytes after this wait.
			kit.SetInFlightBytesWait(srv.Server, 50*time.Millisecond)
			call := pingCalls(srv)[name]
			for _, size := range []int{inBytesMessage, 10 << 10} { // does not fit; fits
				_, err := call(context.Background(), size)
				if name == "rest" {
					if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
						t.Errorf("%d bytes: %v, want HTTP 401", size, err)
					}
				} else if connect.CodeOf(err) != connect.CodeUnauthenticated {
					t.Errorf("%d bytes: %v, want Unauthenticated", size, err)
				}
			}
			if inUse, peak, waiting := kit.InFlightBytes(srv.Server); inUse != held || peak != held || waiting != 0 {
				t.Errorf("bytes held %d, at most %d, %d calls waiting; want %d, %d, 0: a refused caller reserved bytes", inUse, peak, waiting, held, held)
			}
			exhausted := map[string]string{"grpc_method": "Ping", "grpc_code": "ResourceExhausted"}
			if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", exhausted); n != 0 {
				t.Errorf("%v calls refused for their bytes, want none", n)
			}
			release()
		})
	}
}

// TestMaxInFlightBytesServerStream: a gRPC server stream that does not
// fit in KIT_MAX_INFLIGHT_BYTES is refused ResourceExhausted, with
// Retry-After, in a Trailers-Only answer, whose status a grpc-go client
// reads from RecvMsg.
func TestMaxInFlightBytesServerStream(t *testing.T) {
	t.Parallel()
	srv, svc := newBytesServer(t)
	_, release := fillBytes(t, srv, svc)
	defer release()
	kit.SetInFlightBytesWait(srv.Server, 50*time.Millisecond)
	// CountUpRequest has no field that large: an unknown one fills it.
	msg := &pingv1.CountUpRequest{Number: 1}
	msg.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 15, protowire.BytesType), make([]byte, inBytesMessage)))

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a hang ends here
	defer cancel()
	stream, err := grpcConnTo(t, []net.Addr{srv.Addr()}).NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, grpcCountUp)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(msg); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	err = stream.RecvMsg(&pingv1.CountUpResponse{})
	if s := status.Convert(err); s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), "did not fit") {
		t.Errorf("grpc-go: RecvMsg = %v, want ResourceExhausted: ... did not fit", err)
	}

	res := envelopedCall(t, srv, grpcCountUp, msg)
	if res.Header.Get("Grpc-Status") != "8" || res.Header.Get("Retry-After") != "1" || len(res.Trailer) != 0 {
		t.Errorf("header %v, trailer %v; want grpc-status 8 and Retry-After: 1 in the header (Trailers-Only), no trailer", res.Header, res.Trailer)
	}
	labels := map[string]string{"grpc_method": "CountUp", "grpc_code": "ResourceExhausted"}
	waitFor(t, "two refused streams counted", func() bool {
		return counterValue(t, srv.Registry(), "kit_rejected_calls_total", labels) == 2
	})
}
