package kit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// notFoundPings fails every Fail as Kratos' errors.NotFound("USER_NOT_FOUND",
// "user 42 not found").WithMetadata(map[string]string{"id": "42"}) would.
type notFoundPings struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (notFoundPings) Fail(context.Context, *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	err := connect.NewError(connect.CodeNotFound, errors.New("user 42 not found"))
	info, derr := connect.NewErrorDetail(&errdetails.ErrorInfo{
		Reason:   "USER_NOT_FOUND",
		Domain:   "user.example.com",
		Metadata: map[string]string{"id": "42"},
	})
	if derr != nil {
		return nil, derr
	}
	err.AddDetail(info)
	return nil, err
}

// errorReason is Kratos' errors.Reason(err): the reason of the
// google.rpc.ErrorInfo among err's details, or "" if it has none.
func errorReason(err error) (reason string, metadata map[string]string) {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return "", nil
	}
	for _, d := range cerr.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info.GetReason(), info.GetMetadata()
			}
		}
	}
	return "", nil
}

// An error with a reason and metadata, Kratos' errors.New(code, reason,
// message), is a connect error with a google.rpc.ErrorInfo detail: gRPC
// clients find it in the status details (grpc-go's status.Details()), connect
// clients in Details(), and a REST route's caller in the details of the
// google.rpc.Status JSON, under the HTTP status of the code. The call's
// rpc log line says the reason and domain.
func ExampleServer_Mount_errorReason() {
	var logs syncBuffer
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff},
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(notFoundPings{}, srv.HandlerOptions()...))
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	base := "http://" + srv.Addr().String()

	for _, protocol := range []struct {
		name string
		opts []connect.ClientOption
	}{{"connect", nil}, {"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}}} {
		client := pingv1connect.NewPingServiceClient(http.DefaultClient, base, protocol.opts...)
		_, err := client.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: 5}))
		reason, md := errorReason(err)
		fmt.Println(protocol.name+":", connect.CodeOf(err), reason, md)
	}

	// The REST route's caller (post: "/v1/fail/{code}") reads JSON.
	res, err := http.Post(base+"/v1/fail/5", "application/json", strings.NewReader("{}"))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	var compact bytes.Buffer
	_ = json.Compact(&compact, body) // protojson varies its spacing
	fmt.Println("REST:", res.StatusCode, compact.String())

	// A Connect JSON caller (curl, a browser) gets the detail as base64
	// protobuf, and connect's "debug" field shows it as JSON.
	res, err = http.Post(base+pingv1connect.PingServiceFailProcedure, "application/json", strings.NewReader(`{"code": 5}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	var connectErr struct {
		Code    string `json:"code"`
		Details []struct {
			Type  string          `json:"type"`
			Debug json.RawMessage `json:"debug"`
		} `json:"details"`
	}
	_ = json.NewDecoder(res.Body).Decode(&connectErr)
	_ = res.Body.Close()
	compact.Reset()
	_ = json.Compact(&compact, connectErr.Details[0].Debug)
	fmt.Println("Connect JSON:", res.StatusCode, connectErr.Code, connectErr.Details[0].Type, compact.String())
	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	for line := range strings.Lines(logs.String()) {
		var rpc struct{ Msg, Protocol, Code, Reason, Domain string }
		if json.Unmarshal([]byte(line), &rpc) == nil && rpc.Msg == "rpc" {
			fmt.Println("rpc line:", rpc.Protocol, rpc.Code, "reason="+rpc.Reason, "domain="+rpc.Domain)
		}
	}
	// Output:
	// connect: not_found USER_NOT_FOUND map[id:42]
	// grpc-web: not_found USER_NOT_FOUND map[id:42]
	// REST: 404 {"code":5,"message":"user 42 not found","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"USER_NOT_FOUND","domain":"user.example.com","metadata":{"id":"42"}}]}
	// Connect JSON: 404 not_found google.rpc.ErrorInfo {"reason":"USER_NOT_FOUND","domain":"user.example.com","metadata":{"id":"42"}}
	// clean shutdown: true
	// rpc line: connect not_found reason=USER_NOT_FOUND domain=user.example.com
	// rpc line: grpcweb not_found reason=USER_NOT_FOUND domain=user.example.com
	// rpc line: rest not_found reason=USER_NOT_FOUND domain=user.example.com
	// rpc line: connect not_found reason=USER_NOT_FOUND domain=user.example.com
}
