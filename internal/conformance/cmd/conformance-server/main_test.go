package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/connectkit/connectkit/internal/conformance"
	conformancev1 "github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1"
	"github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1/conformancev1connect"
)

func TestRunServesWhatTheRequestAsks(t *testing.T) {
	t.Parallel()
	baseURL := startServer(t, &conformancev1.ServerCompatRequest{
		Protocol:            conformancev1.Protocol_PROTOCOL_GRPC,
		HttpVersion:         conformancev1.HTTPVersion_HTTP_VERSION_2,
		MessageReceiveLimit: 1 << 10,
	})
	h2c := &http.Client{Transport: &http.Transport{Protocols: unencryptedHTTP2()}}
	clients := map[string]conformancev1connect.ConformanceServiceClient{
		"grpc over h2c":             conformancev1connect.NewConformanceServiceClient(h2c, baseURL, connect.WithGRPC()),
		"grpc-web over http1":       conformancev1connect.NewConformanceServiceClient(http.DefaultClient, baseURL, connect.WithGRPCWeb()),
		"connect json over http1":   conformancev1connect.NewConformanceServiceClient(http.DefaultClient, baseURL, connect.WithProtoJSON()),
		"connect GET over http1":    conformancev1connect.NewConformanceServiceClient(http.DefaultClient, baseURL, connect.WithHTTPGet()),
		"connect gzip over h2c":     conformancev1connect.NewConformanceServiceClient(h2c, baseURL, connect.WithSendGzip()),
		"connect binary over http1": conformancev1connect.NewConformanceServiceClient(http.DefaultClient, baseURL),
	}
	for name, client := range clients {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkEcho(t, client, strings.Contains(name, "GET"))
			checkError(t, client)
			checkLimit(t, client)
			if _, err := client.Unimplemented(t.Context(), connect.NewRequest(&conformancev1.UnimplementedRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Errorf("Unimplemented: got %v, want code unimplemented", err)
			}
		})
	}
}

// checkEcho calls IdempotentUnary with data, headers and trailers to send
// back, and checks that they and the request info come back.
func checkEcho(t *testing.T, client conformancev1connect.ConformanceServiceClient, get bool) {
	t.Helper()
	req := connect.NewRequest(&conformancev1.IdempotentUnaryRequest{
		ResponseDefinition: &conformancev1.UnaryResponseDefinition{
			ResponseHeaders:  []*conformancev1.Header{{Name: "x-echo-header", Value: []string{"h1", "h2"}}},
			ResponseTrailers: []*conformancev1.Header{{Name: "x-echo-trailer", Value: []string{"t"}}},
			Response:         &conformancev1.UnaryResponseDefinition_ResponseData{ResponseData: []byte("data")},
		},
	})
	req.Header().Set("X-Request-Marker", "marker")
	resp, err := client.IdempotentUnary(t.Context(), req)
	if err != nil {
		t.Fatalf("IdempotentUnary: %v", err)
	}
	if got := resp.Header().Values("X-Echo-Header"); len(got) != 2 || got[0] != "h1" || got[1] != "h2" {
		t.Errorf("response header x-echo-header = %q, want [h1 h2]", got)
	}
	if got := resp.Trailer().Get("X-Echo-Trailer"); got != "t" {
		t.Errorf("response trailer x-echo-trailer = %q, want t", got)
	}
	payload := resp.Msg.GetPayload()
	if string(payload.GetData()) != "data" {
		t.Errorf("payload data = %q, want data", payload.GetData())
	}
	info := payload.GetRequestInfo()
	if !hasHeader(info.GetRequestHeaders(), "X-Request-Marker", "marker") {
		t.Errorf("request info headers %v lack X-Request-Marker: marker", info.GetRequestHeaders())
	}
	if len(info.GetRequests()) != 1 {
		t.Fatalf("request info holds %d requests, want 1", len(info.GetRequests()))
	}
	var echoed conformancev1.IdempotentUnaryRequest
	if err := anypb.UnmarshalTo(info.GetRequests()[0], &echoed, proto.UnmarshalOptions{}); err != nil {
		t.Fatalf("echoed request: %v", err)
	}
	if gotGet := info.GetConnectGetInfo() != nil; gotGet != get {
		t.Errorf("connect GET info present = %v, want %v", gotGet, get)
	}
	if get && !hasHeader(info.GetConnectGetInfo().GetQueryParams(), "encoding", "proto") {
		t.Errorf("connect GET query %v lacks encoding=proto", info.GetConnectGetInfo().GetQueryParams())
	}
}

// checkError asks Unary for an error and checks that it comes back with the
// request info appended to its details.
func checkError(t *testing.T, client conformancev1connect.ConformanceServiceClient) {
	t.Helper()
	_, err := client.Unary(t.Context(), connect.NewRequest(&conformancev1.UnaryRequest{
		ResponseDefinition: &conformancev1.UnaryResponseDefinition{
			Response: &conformancev1.UnaryResponseDefinition_Error{Error: &conformancev1.Error{
				Code:    conformancev1.Code_CODE_FAILED_PRECONDITION,
				Message: proto.String("asked for"),
			}},
		},
	}))
	var connectErr *connect.Error
	if !errors.As(err, &connectErr) || connectErr.Code() != connect.CodeFailedPrecondition || connectErr.Message() != "asked for" {
		t.Fatalf("Unary: got %v, want failed_precondition: asked for", err)
	}
	details := connectErr.Details()
	if len(details) != 1 {
		t.Fatalf("error has %d details, want 1 (the request info)", len(details))
	}
	if _, err := details[0].Value(); err != nil || details[0].Type() != "connectrpc.conformance.v1.ConformancePayload.RequestInfo" {
		t.Errorf("error detail is %s (%v), want the request info", details[0].Type(), err)
	}
}

// checkLimit sends a message over the 1 KiB receive limit.
func checkLimit(t *testing.T, client conformancev1connect.ConformanceServiceClient) {
	t.Helper()
	_, err := client.Unary(t.Context(), connect.NewRequest(&conformancev1.UnaryRequest{RequestData: bytes.Repeat([]byte{'x'}, 2<<10)}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("Unary over the receive limit: got %v, want resource_exhausted", err)
	}
}

func TestRunRejectsBadRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		req     *conformancev1.ServerCompatRequest
		wantMsg string
	}{
		{
			name:    "tls without creds",
			req:     &conformancev1.ServerCompatRequest{UseTls: true},
			wantMsg: "server_creds",
		},
		{
			name:    "client cert without tls",
			req:     &conformancev1.ServerCompatRequest{ClientTlsCert: []byte("x")},
			wantMsg: "use_tls is false",
		},
		{
			name: "bad creds",
			req: &conformancev1.ServerCompatRequest{
				UseTls:      true,
				ServerCreds: &conformancev1.TLSCreds{Cert: []byte("not pem"), Key: []byte("not pem")},
			},
			wantMsg: "server_creds",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdin, stdout bytes.Buffer
			if err := conformance.WriteDelimited(&stdin, tc.req); err != nil {
				t.Fatal(err)
			}
			err := run(t.Context(), &stdin, &stdout)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("run: got %v, want an error containing %q", err, tc.wantMsg)
			}
			if stdout.Len() != 0 {
				t.Errorf("run wrote %d bytes to stdout for a bad request", stdout.Len())
			}
		})
	}
}

// startServer runs the program on req and returns its base URL. Cleanup
// stops it and checks that it shut down cleanly.
func startServer(tb testing.TB, req *conformancev1.ServerCompatRequest) string {
	tb.Helper()
	var stdin bytes.Buffer
	if err := conformance.WriteDelimited(&stdin, req); err != nil {
		tb.Fatal(err)
	}
	stdoutR, stdoutW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := run(ctx, &stdin, stdoutW)
		_ = stdoutW.CloseWithError(fmt.Errorf("run returned: %w", err))
		done <- err
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("run: %v", err)
		}
	})
	var resp conformancev1.ServerCompatResponse
	if err := conformance.ReadDelimited(stdoutR, &resp); err != nil {
		tb.Fatal(err)
	}
	if resp.GetHost() != "127.0.0.1" || resp.GetPort() == 0 || len(resp.GetPemCert()) != 0 {
		tb.Fatalf("ServerCompatResponse = %v, want 127.0.0.1, a port and no certificate", &resp)
	}
	go func() { _, _ = io.Copy(io.Discard, stdoutR) }()
	return fmt.Sprintf("http://%s:%d", resp.GetHost(), resp.GetPort())
}

func unencryptedHTTP2() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

func hasHeader(headers []*conformancev1.Header, name, value string) bool {
	for _, h := range headers {
		if strings.EqualFold(h.GetName(), name) {
			for _, v := range h.GetValue() {
				if v == value {
					return true
				}
			}
		}
	}
	return false
}
