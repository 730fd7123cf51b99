package kit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// echoPings answers Ping with the request's number and text.
type echoPings struct {
	pingv1connect.UnimplementedPingServiceHandler
}

func (echoPings) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber(), Text: req.Msg.GetText()}), nil
}

// The default chain takes the options of package interceptors: here
// payload logging at debug level, which leaves out the fields marked
// debug_redact in the proto (PingRequest's secret).
func ExampleWithInterceptorOptions() {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithLogger(logger),
		kit.WithInterceptorOptions(interceptors.WithPayloads()))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Mount(pingv1connect.NewPingServiceHandler(echoPings{}, srv.HandlerOptions()...))
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	client := pingv1connect.NewPingServiceClient(http.DefaultClient, "http://"+srv.Addr().String())
	_, err = client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 42, Text: "hi", Secret: "s3cret"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	stop()
	fmt.Println("clean shutdown:", <-done == nil)

	lines := bufio.NewScanner(&logs)
	for lines.Scan() {
		var line struct {
			Level, Msg, Direction, Code string
			Payload                     json.RawMessage
		}
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
			fmt.Println(err)
			return
		}
		switch line.Msg {
		case "payload":
			fmt.Println(line.Level, line.Msg, line.Direction, string(line.Payload))
		case "rpc":
			fmt.Println(line.Level, line.Msg, line.Code)
		}
	}
	// Output:
	// clean shutdown: true
	// DEBUG payload request {"number":"42","text":"hi"}
	// DEBUG payload response {"number":"42","text":"hi"}
	// INFO rpc ok
}
