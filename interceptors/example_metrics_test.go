package interceptors_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// This example puts Metrics alone on a plain connect handler: every call is
// counted under go-grpc-prometheus's names and labels, so that existing
// dashboards and alerts read it.
func ExampleMetrics() {
	reg := prometheus.NewRegistry()
	metrics, err := interceptors.Metrics(reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(metrics)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL)
	ctx := context.Background()
	for range 2 {
		if _, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
			fmt.Println(err)
			return
		}
	}
	_, _ = client.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)}))

	// The series of the codes that alerts watch (Unavailable, Internal, …)
	// exist from the first call, at 0; those counted are printed here.
	families, err := reg.Gather()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range families {
		if f.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v > 0 {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				fmt.Println(f.GetName(), strings.Join(labels, " "), v)
			}
		}
	}
	// Output:
	// grpc_server_handled_total grpc_code=NotFound grpc_method=Fail grpc_service=connectkit.ping.v1.PingService grpc_type=unary 1
	// grpc_server_handled_total grpc_code=OK grpc_method=Ping grpc_service=connectkit.ping.v1.PingService grpc_type=unary 2
}
