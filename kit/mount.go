package kit

import (
	"net/http"
	"slices"
	"strings"
	"sync"

	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The standard reflection descriptors, so that reflection lists and
	// describes its own services as grpc-go servers do (connect's
	// grpcreflect registers its copies under another package name).
	_ "google.golang.org/grpc/reflection/grpc_reflection_v1"
	_ "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/connectkit/connectkit/health"
)

// Mount serves h under the path pattern, in the (path, handler) shape that
// generated connect constructors return:
//
//	srv.Mount(examplev1connect.NewProfileServiceHandler(svc, srv.HandlerOptions()...))
//
// When path names a protobuf service ("/example.v1.ProfileService/"), gRPC
// server reflection lists it and the gRPC health service reports its status
// (see [Server.Health]). Any other net/http handler mounts too; one mounted
// at "/" gets the requests no other path matches, which otherwise get an
// Unimplemented error in their RPC protocol (or a plain 404).
func (s *Server) Mount(path string, h http.Handler) {
	if path == "/" { // the mux's "/" answers unknown procedures until then
		s.unknown.root.Store(&h)
		return
	}
	service := serviceOf(path)
	if service == nil {
		s.mux.Handle(path, h)
		return
	}
	if streams := clientStreams(service); len(streams) > 0 {
		h = withBodyControllers(h, streams)
	}
	s.mux.Handle(path, h)
	name := string(service.FullName())
	s.reflector.add(name)
	if !strings.HasPrefix(name, "grpc.reflection.") && name != health.ServiceName {
		s.health.AddService(name)
	}
}

// serviceOf returns the protobuf service that path serves, or nil when it
// names none registered in the global registry.
func serviceOf(path string) protoreflect.ServiceDescriptor {
	name := strings.Trim(path, "/")
	if name == "" || strings.Contains(name, "/") {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil
	}
	service, _ := d.(protoreflect.ServiceDescriptor)
	return service
}

// clientStreams returns the paths of service's client and bidi streaming
// procedures, whose request bodies the stream's deadline bounds.
func clientStreams(service protoreflect.ServiceDescriptor) map[string]bool {
	paths := map[string]bool{}
	methods := service.Methods()
	for i := range methods.Len() {
		if m := methods.Get(i); m.IsStreamingClient() {
			paths["/"+string(service.FullName())+"/"+string(m.Name())] = true
		}
	}
	return paths
}

// reflection serves gRPC server reflection (v1 and v1alpha) for every
// mounted service, so grpcurl and buf curl work without proto files.
type reflection struct {
	mu    sync.Mutex
	names []string
}

func (s *Server) mountReflection() {
	reflector := grpcreflect.NewReflector(s.reflector)
	s.Mount(grpcreflect.NewHandlerV1(reflector, s.handler...))
	s.Mount(grpcreflect.NewHandlerV1Alpha(reflector, s.handler...))
}

func (r *reflection) add(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.names, name) {
		r.names = append(r.names, name)
		slices.Sort(r.names)
	}
}

// Names implements grpcreflect.Namer.
func (r *reflection) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.names)
}
