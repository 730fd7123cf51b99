package interceptors_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// This example puts Logging alone on a plain connect handler: one "rpc" line
// per call, at a level set by its code, and LoggerFrom gives the handler a
// logger that carries the call's procedure.
func ExampleLogging() {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{},
		connect.WithInterceptors(interceptors.Logging(logger))))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)
	ctx := context.Background()
	// Text "log" makes the handler log through interceptors.LoggerFrom(ctx).
	if _, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Text: "log"})); err != nil {
		fmt.Println(err)
		return
	}
	_, err := client.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)}))
	fmt.Println("client:", connect.CodeOf(err))

	lines := bufio.NewScanner(&logs)
	for lines.Scan() {
		var line struct{ Level, Msg, Kind, Procedure, Code string }
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %q kind=%s procedure=%s code=%s\n", line.Level, line.Msg, line.Kind, line.Procedure, line.Code)
	}
	// Output:
	// client: not_found
	// INFO "handler line" kind= procedure=/connectkit.ping.v1.PingService/Ping code=
	// INFO "rpc" kind=server procedure=/connectkit.ping.v1.PingService/Ping code=ok
	// WARN "rpc" kind=server procedure=/connectkit.ping.v1.PingService/Fail code=not_found
}
