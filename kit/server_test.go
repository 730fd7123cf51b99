package kit_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

func TestEveryProtocolEveryStreamType(t *testing.T) {
	t.Parallel()
	t.Run("frame batching", func(t *testing.T) {
		t.Parallel()
		testEveryProtocol(t, newPingServer(t, kit.Config{}, nil))
	})
	t.Run("no frame batching", func(t *testing.T) {
		t.Parallel()
		testEveryProtocol(t, newPingServer(t, kit.Config{NoFrameBatching: true}, nil))
	})
}

func testEveryProtocol(t *testing.T, srv *kittest.Server) {
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			client := newPingClient(srv, p.Client, p.Options...)

			res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 42, Text: "hi"}))
			if err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if res.Msg.GetNumber() != 42 || res.Msg.GetText() != "hi" {
				t.Errorf("Ping = %v, want 42 and hi", res.Msg)
			}

			callStreams(t, client, !strings.HasSuffix(p.Name, "http1")) // full-duplex streams need HTTP/2
		})
	}
}

// callStreams calls each streaming procedure of client once, and the bidi
// one when bidi is set (full-duplex streams need HTTP/2), and checks the
// answers.
func callStreams(t *testing.T, client pingv1connect.PingServiceClient, bidi bool) {
	t.Helper()
	ctx := t.Context()
	up, err := client.CountUp(ctx, connect.NewRequest(&pingv1.CountUpRequest{Number: 3}))
	if err != nil {
		t.Fatalf("CountUp: %v", err)
	}
	var got []int64
	for up.Receive() {
		got = append(got, up.Msg().GetNumber())
	}
	if err := up.Err(); err != nil || len(got) != 3 || got[2] != 3 {
		t.Errorf("CountUp = %v, %v; want [1 2 3]", got, err)
	}

	sum := client.Sum(ctx)
	for _, n := range []int64{1, 2, 3} {
		if err := sum.Send(&pingv1.SumRequest{Number: n}); err != nil {
			t.Fatalf("Sum.Send: %v", err)
		}
	}
	sumRes, err := sum.CloseAndReceive()
	if err != nil || sumRes.Msg.GetSum() != 6 {
		t.Errorf("Sum = %v, %v; want 6", sumRes, err)
	}

	if !bidi {
		return
	}
	stream := client.CumSum(ctx)
	for i, n := range []int64{1, 2, 3} {
		if err := stream.Send(&pingv1.CumSumRequest{Number: n}); err != nil {
			t.Fatalf("CumSum.Send: %v", err)
		}
		msg, err := stream.Receive()
		if want := []int64{1, 3, 6}[i]; err != nil || msg.GetSum() != want {
			t.Fatalf("CumSum.Receive = %v, %v; want %d", msg, err, want)
		}
	}
	if err := stream.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseResponse(); err != nil {
		t.Fatal(err)
	}
}

func TestGRPCGoClient(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{}, nil)
	var res pingv1.PingResponse
	err := grpcConn(t, srv.Addr().String()).Invoke(t.Context(), "/connectkit.ping.v1.PingService/Ping", &pingv1.PingRequest{Number: 7}, &res)
	if err != nil || res.GetNumber() != 7 {
		t.Fatalf("Ping = %v, %v; want 7", &res, err)
	}
}

func TestReflectionListsMountedServices(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{}, nil)
	stream, err := reflectionv1.NewServerReflectionClient(grpcConn(t, srv.Addr().String())).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "connectkit.ping.v1.PingService") {
		t.Errorf("reflection lists %v, missing connectkit.ping.v1.PingService", names)
	}

	// The descriptors resolve too: what grpcurl describe needs.
	err = stream.Send(&reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: "connectkit.ping.v1.PingService",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res, err = stream.Recv(); err != nil || len(res.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("FileContainingSymbol = %v, %v", res, err)
	}
	_ = stream.CloseSend()
}

func TestConnectGET(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{}, nil)
	client := newPingClient(srv, srv.HTTP1Client(), connect.WithHTTPGet(), connect.WithProtoJSON())
	res, err := client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{Number: 5}))
	if err != nil || res.Msg.GetNumber() != 5 {
		t.Fatalf("Ping over GET = %v, %v", res, err)
	}

	// And from a plain HTTP GET, as a browser or a CDN would send it.
	url := srv.URL + "/connectkit.ping.v1.PingService/Ping?encoding=json&message=%7B%22number%22%3A9%7D"
	httpRes, err := srv.HTTP1Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer httpRes.Body.Close()
	body := readAll(t, httpRes.Body)
	if httpRes.StatusCode != 200 || !strings.Contains(body, `"number":"9"`) {
		t.Fatalf("GET = %d %s", httpRes.StatusCode, body)
	}
}
