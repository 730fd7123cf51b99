package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
)

// serveGRPC serves Ping with google.golang.org/grpc's own server and its
// defaults (variant grpc-go).
func serveGRPC(ctx context.Context, f flags, _ io.Writer, ready func(net.Addr)) error {
	var opts []grpc.ServerOption
	if f.tls {
		cert, err := selfSigned()
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&pingServiceDesc, grpcPing{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	ready(ln.Addr())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	srv.GracefulStop()
	return <-served
}

// pingServiceDesc describes PingService's Ping to grpc-go, as
// protoc-gen-go-grpc would generate it (the same ServiceDesc and method
// handler, so the same work per call). Written by hand because only this
// benchmark serves with grpc-go: one method does not justify a second
// code generator in tools/go.mod, generated files in internal/gen that
// only a benchmark uses, and a grpc-go stub for every test proto.
var pingServiceDesc = grpc.ServiceDesc{
	ServiceName: "connectkit.ping.v1.PingService",
	HandlerType: (*pingServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Ping", Handler: pingHandler}},
	Metadata:    "connectkit/ping/v1/ping.proto",
}

type pingServer interface {
	Ping(context.Context, *pingv1.PingRequest) (*pingv1.PingResponse, error)
}

func pingHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(pingv1.PingRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(pingServer).Ping(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/connectkit.ping.v1.PingService/Ping"}
	handler := func(ctx context.Context, req any) (any, error) {
		return srv.(pingServer).Ping(ctx, req.(*pingv1.PingRequest))
	}
	return interceptor(ctx, in, info, handler)
}

// grpcPing is the echo handler for grpc-go.
type grpcPing struct{}

func (grpcPing) Ping(_ context.Context, req *pingv1.PingRequest) (*pingv1.PingResponse, error) {
	return echo(req), nil
}
