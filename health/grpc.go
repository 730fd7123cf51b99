package health

import (
	"context"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ServiceName is the fully-qualified name of the gRPC health service.
const ServiceName = "grpc.health.v1.Health"

// NewHandler serves h as the gRPC health service grpc.health.v1.Health
// (Check, List and Watch) over gRPC, gRPC-Web and Connect, binary and JSON.
// It returns the path to mount the handler on and the handler, like connect's
// generated constructors; opts (the server's interceptor chain, limits…)
// apply to every method.
//
// Check answers the status of the requested service, or of the whole server
// for "", after running its on-probe checks; an unknown service is
// NotFound. Watch sends the status at once (SERVICE_UNKNOWN for an unknown
// service, and keeps watching), then every change until the client goes
// away or [Checker.CloseWatches]; it runs the service's on-probe checks
// every [WatchProbeInterval] itself, so it sees their changes when nothing
// else probes. List answers every known service.
//
// The messages are grpc-go's generated types for the standard
// grpc/health/v1/health.proto: JSON reads "SERVING", as clients built from
// that proto expect, gRPC server reflection resolves the service, and a
// program that also links grpc-go's health package meets no conflicting
// registration.
func NewHandler(h *Checker, opts ...connect.HandlerOption) (string, http.Handler) {
	// Written by hand rather than with connectrpc.com/grpchealth (checked
	// at v1.5.0, which added Watch): that package's bundled copy of the
	// proto renames the enum values, so that its JSON reads
	// "SERVING_STATUS_SERVING" where clients of the standard proto expect
	// "SERVING", and it has no List (the standard proto's newest method).
	methods := healthpb.File_grpc_health_v1_health_proto.Services().ByName("Health").Methods()
	check := connect.NewUnaryHandler(
		healthpb.Health_Check_FullMethodName,
		h.checkRPC,
		connect.WithSchema(methods.ByName("Check")),
		connect.WithHandlerOptions(opts...),
	)
	list := connect.NewUnaryHandler(
		healthpb.Health_List_FullMethodName,
		h.listRPC,
		connect.WithSchema(methods.ByName("List")),
		connect.WithHandlerOptions(opts...),
	)
	watch := connect.NewServerStreamHandler(
		healthpb.Health_Watch_FullMethodName,
		h.watchRPC,
		connect.WithSchema(methods.ByName("Watch")),
		connect.WithHandlerOptions(opts...),
	)
	return "/" + ServiceName + "/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case healthpb.Health_Check_FullMethodName:
			check.ServeHTTP(w, r)
		case healthpb.Health_List_FullMethodName:
			list.ServeHTTP(w, r)
		case healthpb.Health_Watch_FullMethodName:
			watch.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

func (h *Checker) checkRPC(
	ctx context.Context,
	req *connect.Request[healthpb.HealthCheckRequest],
) (*connect.Response[healthpb.HealthCheckResponse], error) {
	svc := req.Msg.GetService()
	if _, ok := h.status(svc); !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", svc))
	}
	h.probe(ctx, scope{service: svc})
	st, _ := h.status(svc)
	return connect.NewResponse(&healthpb.HealthCheckResponse{Status: st}), nil
}

func (h *Checker) listRPC(
	ctx context.Context,
	_ *connect.Request[healthpb.HealthListRequest],
) (*connect.Response[healthpb.HealthListResponse], error) {
	h.probe(ctx, scope{})
	_, statuses, _ := h.snapshot(scope{})
	res := &healthpb.HealthListResponse{
		Statuses: make(map[string]*healthpb.HealthCheckResponse, len(statuses)),
	}
	for svc, st := range statuses {
		res.Statuses[svc] = &healthpb.HealthCheckResponse{Status: st}
	}
	return connect.NewResponse(res), nil
}

func (h *Checker) watchRPC(
	ctx context.Context,
	req *connect.Request[healthpb.HealthCheckRequest],
	stream *connect.ServerStream[healthpb.HealthCheckResponse],
) error {
	return h.watch(ctx, req.Msg.GetService(), func(st servingStatus) error {
		return stream.Send(&healthpb.HealthCheckResponse{Status: st})
	})
}
