// Package ping is the PingService handler of the hello servers: Ping
// answers with its request, and each request goes to Sent when set.
package ping

import (
	"context"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// Service implements pingv1connect.PingServiceHandler's Ping; the other
// methods are unimplemented.
type Service struct {
	pingv1connect.UnimplementedPingServiceHandler
	// Sent, if set, is given every request before Ping answers; its error
	// fails the call.
	Sent func(context.Context, *pingv1.PingRequest) error
}

// Ping answers with the request's number and text.
func (s Service) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if s.Sent != nil {
		if err := s.Sent(ctx, req.Msg); err != nil {
			return nil, err
		}
	}
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: req.Msg.GetText()}), nil
}
