package interceptors_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/msgctx"
)

// reasonPings fails Fail calls of code NotFound as Kratos'
// errors.NotFound("USER_NOT_FOUND", …) would, with a google.rpc.ErrorInfo
// after a detail of another type, and the others with no detail.
type reasonPings struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (reasonPings) Fail(_ context.Context, req *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	code := connect.Code(req.Msg.GetCode())
	err := connect.NewError(code, errors.New("user 42 not found"))
	if code != connect.CodeNotFound {
		return nil, err
	}
	for _, msg := range []proto.Message{
		&errdetails.RetryInfo{},
		&errdetails.ErrorInfo{Reason: "USER_NOT_FOUND", Domain: "user.example.com", Metadata: map[string]string{"id": "42"}},
	} {
		d, derr := connect.NewErrorDetail(msg)
		if derr != nil {
			return nil, derr
		}
		err.AddDetail(d)
	}
	return nil, err
}

// The rpc lines of a call whose error carries a google.rpc.ErrorInfo say
// its reason and domain, on the server and on the client, over every
// protocol; those of an error without one have neither.
func TestLoggingErrorReason(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			server := newObserved(t, slog.LevelDebug)
			client := newObserved(t, slog.LevelDebug)
			mux := http.NewServeMux()
			mux.Handle(pingv1connect.NewPingServiceHandler(reasonPings{}, connect.WithInterceptors(server.chain.Server()...)))
			url := serve(t, mux)
			pings := pingv1connect.NewPingServiceClient(httpClient(t, false), url,
				append([]connect.ClientOption{connect.WithInterceptors(client.chain.Client()...)}, p.opts...)...)

			for _, tc := range []struct {
				code           connect.Code
				reason, domain any
			}{
				{connect.CodeNotFound, "USER_NOT_FOUND", "user.example.com"},
				{connect.CodeInternal, nil, nil},
			} {
				if _, err := pings.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(tc.code)})); connect.CodeOf(err) != tc.code {
					t.Fatalf("Fail(%v): %v", tc.code, err)
				}
				for side, o := range map[string]*observed{"server": server, "client": client} {
					line := o.logs.waitLine(t, map[string]any{"msg": "rpc", "code": tc.code.String()})
					if line["reason"] != tc.reason || line["domain"] != tc.domain {
						t.Errorf("%s line of %v: reason %v, domain %v; want %v, %v", side, tc.code,
							line["reason"], line["domain"], tc.reason, tc.domain)
					}
				}
			}
		})
	}
}

// A delivery's message line says the reason and domain of its handler's
// error's ErrorInfo too.
func TestMessageErrorReason(t *testing.T) {
	t.Parallel()
	o := newObserved(t, slog.LevelInfo)
	info := &msgctx.Info{
		Operation: msgctx.Process, System: "mem", Topic: topic, Subscription: subscription,
		MessageID: "msg-1", MessageType: topic, Attempt: 1, MaxAttempts: 5,
	}
	deliver(t, subscriber(t, o), info, &pingv1.PingRequest{Text: "reason"})
	line := o.logs.waitLine(t, map[string]any{"msg": "message"})
	if line["code"] != "not_found" || line["reason"] != "USER_NOT_FOUND" || line["domain"] != "user.example.com" {
		t.Errorf("message line: code %v, reason %v, domain %v; want not_found, USER_NOT_FOUND, user.example.com",
			line["code"], line["reason"], line["domain"])
	}
}
