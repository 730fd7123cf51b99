package kit_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// newerPing returns the ping service of a newer schema, as another build of
// a program has it: PingRequest and PingResponse with a field region (4).
func newerPing(tb testing.TB) protoreflect.ServiceDescriptor {
	tb.Helper()
	fdp := protodesc.ToFileDescriptorProto(pingv1.File_connectkit_ping_v1_ping_proto)
	for _, m := range fdp.GetMessageType() {
		if m.GetName() == "PingRequest" || m.GetName() == "PingResponse" {
			m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{
				Name: proto.String("region"), JsonName: proto.String("region"), Number: proto.Int32(4),
				Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			})
		}
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		tb.Fatal(err)
	}
	return fd.Services().ByName("PingService")
}

// withProtocols returns the protocols of s, and Connect GET.
func withProtocols(s *kittest.Server) []kittest.Protocol {
	ps := s.Protocols()
	for _, json := range []bool{false, true} {
		p := kittest.Protocol{Name: "connect-get+proto", Client: s.HTTP1Client(), Options: []connect.ClientOption{connect.WithHTTPGet()}}
		if json {
			p.Name, p.Options = "connect-get+json", append(p.Options, connect.WithProtoJSON())
		}
		ps = append(ps, p)
	}
	return ps
}

// dynamicInit makes connect decode into messages of the newer schema.
func dynamicInit(desc protoreflect.MessageDescriptor) func(connect.Spec, any) error {
	return func(_ connect.Spec, msg any) error {
		*msg.(*dynamicpb.Message) = *dynamicpb.NewMessage(desc)
		return nil
	}
}

// TestNewClientCallsOldServer calls a kit server of an older schema, with
// its default chain (validation included), from a client of a newer one,
// over every protocol: the server drops the field it does not know (JSON)
// or keeps it unknown (binary), and answers.
func TestNewClientCallsOldServer(t *testing.T) {
	t.Parallel()
	s := newPingServer(t, kit.Config{}, nil)
	method := newerPing(t).Methods().ByName("Ping")
	for _, p := range withProtocols(s) {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			opts := append([]connect.ClientOption{
				connect.WithSchema(method), connect.WithIdempotency(connect.IdempotencyNoSideEffects),
				connect.WithResponseInitializer(dynamicInit(method.Output())),
			}, p.Options...)
			client := connect.NewClient[dynamicpb.Message, dynamicpb.Message](p.Client, s.URL+pingv1connect.PingServicePingProcedure, opts...)
			req := dynamicpb.NewMessage(method.Input())
			req.Set(method.Input().Fields().ByName("number"), protoreflect.ValueOfInt64(7))
			req.Set(method.Input().Fields().ByName("region"), protoreflect.ValueOfString("eu"))
			res, err := client.CallUnary(t.Context(), connect.NewRequest(req))
			if err != nil {
				t.Fatalf("a newer client's call: %v", err)
			}
			fields := method.Output().Fields()
			if n := res.Msg.Get(fields.ByName("number")).Int(); n != 7 {
				t.Errorf("number = %d, want 7", n)
			}
			if r := res.Msg.Get(fields.ByName("region")).String(); r != "" {
				t.Errorf("region = %q from a server that does not know it", r)
			}
		})
	}
}

// TestOldClientCallsNewServer calls a kit server of a newer schema, whose
// responses have a field more, from a generated client of the older one,
// over every protocol: the client reads the fields it knows.
func TestOldClientCallsNewServer(t *testing.T) {
	t.Parallel()
	method := newerPing(t).Methods().ByName("Ping")
	s := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		opts := append(srv.HandlerOptions(), connect.WithSchema(method), connect.WithIdempotency(connect.IdempotencyNoSideEffects),
			connect.WithRequestInitializer(dynamicInit(method.Input())))
		ping := connect.NewUnaryHandler(pingv1connect.PingServicePingProcedure,
			func(_ context.Context, req *connect.Request[dynamicpb.Message]) (*connect.Response[dynamicpb.Message], error) {
				in, out := method.Input().Fields(), method.Output().Fields()
				res := dynamicpb.NewMessage(method.Output())
				res.Set(out.ByName("number"), req.Msg.Get(in.ByName("number")))
				res.Set(out.ByName("text"), protoreflect.ValueOfString("from the newer server"))
				res.Set(out.ByName("region"), protoreflect.ValueOfString("eu"))
				return connect.NewResponse(res), nil
			}, opts...)
		srv.Mount("/connectkit.ping.v1.PingService/", ping)
	})
	for _, p := range withProtocols(s) {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			res, err := newPingClient(s, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 7}))
			if err != nil {
				t.Fatalf("an older client's call: %v", err)
			}
			if res.Msg.GetNumber() != 7 || res.Msg.GetText() != "from the newer server" {
				t.Errorf("response %v, want number 7 and the text", res.Msg)
			}
		})
	}
}
