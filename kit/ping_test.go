package kit_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// pingServer implements the test PingService. Ping reports the deadline of
// its context in the response header "Deadline" and, when block is set,
// closes entered and waits on block before answering.
type pingServer struct {
	pingv1connect.UnimplementedPingServiceHandler
	block   chan struct{}
	entered chan struct{}
	once    sync.Once
}

// blockingPing returns a pingServer whose Ping blocks until block is closed.
func blockingPing() *pingServer {
	return &pingServer{block: make(chan struct{}), entered: make(chan struct{})}
}

func (p *pingServer) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if p.block != nil {
		p.once.Do(func() { close(p.entered) })
		select {
		case <-p.block:
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
	res := connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: req.Msg.GetText()})
	if deadline, ok := ctx.Deadline(); ok {
		res.Header().Set("Deadline", deadline.Format("2006-01-02T15:04:05.000000000Z07:00"))
	}
	return res, nil
}

func (p *pingServer) Fail(_ context.Context, req *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	return nil, connect.NewError(connect.Code(req.Msg.GetCode()), errors.New("failed as asked"))
}

func (p *pingServer) Sum(_ context.Context, stream *connect.ClientStream[pingv1.SumRequest]) (*connect.Response[pingv1.SumResponse], error) {
	var sum int64
	for stream.Receive() {
		sum += stream.Msg().GetNumber()
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pingv1.SumResponse{Sum: sum}), nil
}

func (p *pingServer) CountUp(_ context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	for i := int64(1); i <= req.Msg.GetNumber(); i++ {
		if err := stream.Send(&pingv1.CountUpResponse{Number: i}); err != nil {
			return err
		}
	}
	return nil
}

func (p *pingServer) CumSum(_ context.Context, stream *connect.BidiStream[pingv1.CumSumRequest, pingv1.CumSumResponse]) error {
	var sum int64
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		sum += req.GetNumber()
		if err := stream.Send(&pingv1.CumSumResponse{Sum: sum}); err != nil {
			return err
		}
	}
}

// newPingServer runs a kit server with the ping service mounted.
func newPingServer(tb testing.TB, cfg kit.Config, svc *pingServer, opts ...kit.Option) *kittest.Server {
	tb.Helper()
	if svc == nil {
		svc = &pingServer{}
	}
	return kittest.NewServer(tb, cfg, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(svc, srv.HandlerOptions()...))
	}, opts...)
}

// clientProtocols are the client options of each protocol, by name.
var clientProtocols = map[string][]connect.ClientOption{
	"connect": nil,
	"grpc":    {connect.WithGRPC()},
	"grpcweb": {connect.WithGRPCWeb()},
}

func newPingClient(s *kittest.Server, httpClient *http.Client, opts ...connect.ClientOption) pingv1connect.PingServiceClient {
	return pingv1connect.NewPingServiceClient(httpClient, s.URL, opts...)
}

func asConnectError(err error, target **connect.Error) bool {
	return errors.As(err, target)
}

func containsFold(list, item string) bool {
	for _, x := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(x), item) {
			return true
		}
	}
	return false
}
